"""plan_agents on task lists of 10 to 10,000 items (issue 12): goal near-linear.

Two curves: the pure rules (decompose, stages, split_budget) on lists up to 10,000 items, and the whole
plan_agents tool (validation, one transaction reserving every share, the answer) up to what its 50,000-character
description admits. Items cycle through the stages, so dependencies are found between many sub-tasks.

Run: .venv/bin/python benchmarks/bench_plan.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

from butler_skill.config import write_keys_file
from butler_skill.core.allocation import split_budget
from butler_skill.core.decomposition import decompose, stages
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool

VERBS = ("Gather", "Clean", "Analyze", "Design", "Build", "Write", "Review", "Deploy")


def description(n: int, short: bool = False, shape: str = "cycling") -> str:
    """`cycling`: items go through the eight stages again and again; `ordered`: one gathering step, n - 2
    building steps, one review (the answer then has about 2n dependency links)."""
    ordered = ["Gather"] + ["Build"] * (n - 2) + ["Review"]
    verbs = ordered if shape == "ordered" else [VERBS[i % 8] for i in range(n)]
    if short:
        return "\n".join(f"- {v} {i}" for i, v in enumerate(verbs))
    return "\n".join(f"- {v} part {i} of the report" for i, v in enumerate(verbs))


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def links(n: int, shape: str) -> int:
    """Dependency links in the answer: the rule makes every sub-task wait for every earlier sink of a lower
    stage, so a list that cycles through the stages has an answer that grows faster than its length."""
    return sum(len(s.depends_on) for s in decompose(description(n, shape=shape), "bench"))


def core(n: int, shape: str) -> float:
    text = description(n, shape=shape)

    def run() -> None:
        specs = decompose(text, "bench")
        stages(specs)
        split_budget(100_000_000, [(s.estimated_tokens, s.priority) for s in specs])

    return best_of(3 if n < 10_000 else 1, run)


def tool(folder: Path, n: int) -> float:
    keys = folder / "keys.json"
    write_keys_file(keys, [{"id": "k1", "provider": "groq", "limits": {"tokens_per_day": 10**12}}], force=True)
    ctx = Context(env={"HOME": str(folder)}, keys_path=keys, state_path=folder / f"plan-{n}.db")
    text = description(n, short=True, shape="ordered")
    assert len(text) <= 50_000, len(text)

    def run() -> None:
        out = call_tool("plan_agents", {"name": "bench", "description": text, "budget": 100_000_000}, ctx)
        assert out["ok"] and len(out["result"]["agents"]) == n, out

    took = best_of(3, run)
    ctx.close()
    return took


def main() -> None:
    print(f"machine: {machine()}")
    print("\nplan_agents: pure rules (decompose + stages + split_budget), best of 3")
    print("| items | dependency links | ms | µs per item | µs per (item + link) |")
    print("|---:|---:|---:|---:|---:|")
    for shape, sizes in (("ordered", (10, 100, 1_000, 10_000)), ("cycling", (10, 100, 1_000, 3_000))):
        print(f"{shape}:")
        for n in sizes:
            s, k = core(n, shape), links(n, shape)
            print(f"| {n:,} | {k:,} | {s * 1e3:.1f} | {s * 1e6 / n:.1f} | {s * 1e6 / (n + k):.2f} |", flush=True)
    print("\nplan_agents tool (validation, one transaction reserving every share, the answer), best of 3")
    print("| items | ms | µs per item |")
    print("|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (10, 100, 1_000, 3_000):
            s = tool(Path(tmp), n)
            print(f"| {n:,} | {s * 1e3:.1f} | {s * 1e6 / n:.1f} |", flush=True)


if __name__ == "__main__":
    main()
