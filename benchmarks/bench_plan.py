"""plan_agents on task lists of 10 to 10,000 items (issue 12): goal near-linear.

Three curves: the pure rules (decompose, stages, split_budget) on lists up to 10,000 items; the plan itself
(decompose, split, one transaction reserving every share and writing every session and sub-task) on 10 to 10,000
items, past the tool's input limit; and the whole plan_agents tool (validation, the plan, the answer) up to what its
50,000-character description admits. Items cycle through the stages, so dependencies are found between many
sub-tasks.

`--phases N` (issue 12): what spawn_agent spends before its first request and after its last for N sub-tasks (the
bench_subagents.py task: "- Item i: say ok" items, three keys): opening a new ledger (bench_subagents.py's plan phase
includes it: its ledger is new), the plan, then, once every sub-task is marked done, the read-back and the answer
(rows, aggregate, output model). Each phase starts after a full garbage collection: otherwise a full collection of
what earlier work left (about 55 ms in this process) falls into whichever phase crosses the collector's threshold,
and moves between phases as their allocations change. Each run in a fresh process; with `--compare GIT_REF`
the same in processes running GIT_REF's code (git archive), interleaved, wall and CPU medians side by side.

Run: .venv/bin/python benchmarks/bench_plan.py [--phases 1000 [--runs 7] [--compare main]]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import statistics
import subprocess
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


def planned(folder: Path, n: int) -> float:
    """plan (decompose, split, reserve and write every row) of n items, without the tool's input limit."""
    from butler_skill.subagents.planning import plan_task

    keys = folder / "keys.json"
    write_keys_file(keys, [{"id": "k1", "provider": "groq", "limits": {"tokens_per_day": 10**12}}], force=True)
    ctx = Context(env={"HOME": str(folder)}, keys_path=keys, state_path=folder / f"planned-{n}.db")
    text = description(n, short=True, shape="ordered")
    took = best_of(3, lambda: plan_task(ctx, name="bench", description=text, budget=n * 1_000, mode="spawn",
                                        options={}))
    ctx.close()
    return took


ROOT = Path(__file__).resolve().parent.parent


def phases_worker(n: int, folder: Path) -> None:
    """One run in this process: plan n sub-tasks, mark them done, read back; print wall and CPU of each phase."""
    from butler_skill.handlers import agents
    from butler_skill.store.tasks import TaskStore
    from butler_skill.subagents import planning

    keys = folder / "keys.json"
    write_keys_file(keys, [{"id": f"fake-{k}", "provider": "openai", "scope": f"acct-{k}",
                            "base_url": "http://127.0.0.1:9", "model": "fake-model", "key": "sk-bench-not-a-secret",
                            "limits": {"tokens_per_day": 10**12}} for k in (1, 2, 3)], force=True)
    text = "\n".join(f"- Item {i}: say ok" for i in range(n))

    def read_back(ctx: Context, task_id: str) -> object:
        if hasattr(agents, "spawn_output"):
            return agents.spawn_output(ctx, task_id)
        rows = TaskStore(ctx.db).subtasks(task_id)  # the code before issue 12's read-back
        return agents.SpawnAgentOutput(task_id=task_id, results=[agents._result(r) for r in rows],
                                       aggregate=agents.task_aggregate(task_id, rows))

    out = {}
    for label, items in (("warm", 100), ("run", n)):  # the warm-up: imports and code paths, as a long-lived host
        ctx = Context(env={"HOME": str(folder)}, keys_path=keys, state_path=folder / f"{label}.db")
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        ctx.db  # noqa: B018  open (and create) the ledger: bench_subagents.py's plan phase includes this
        ctx.config  # noqa: B018
        opened = [time.perf_counter() - t0, time.process_time() - c0]
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        task_id, _ = planning.plan_task(ctx, name="bench", description=text if label == "run" else
                                        "\n".join(f"- Item {i}: say ok" for i in range(items)),
                                        budget=items * 1_000, mode="spawn", options={"maxConcurrent": 100})
        plan = [time.perf_counter() - t0, time.process_time() - c0]
        with sqlite3.connect(folder / f"{label}.db") as raw:  # every sub-task done, as after the run
            raw.execute("UPDATE sessions SET used = 900, leg_held = 0, state = 'closed' WHERE task_id = ?", (task_id,))
            raw.execute("UPDATE subtasks SET status = 'success', output = 'ok', attempts = 1 WHERE task_id = ?",
                        (task_id,))
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        answer = read_back(ctx, task_id)
        back = [time.perf_counter() - t0, time.process_time() - c0]
        assert len(answer.results) == items and answer.aggregate.successful == items  # type: ignore[attr-defined]
        out = {"open": opened, "plan": plan, "read_back": back}
        ctx.close()
    print(json.dumps(out))


def phases(n: int, runs: int, compare: str | None) -> None:
    print(f"\nspawn_agent's serial phases for {n:,} sub-tasks (plan; read-back and answer), {runs} runs each, a fresh "
          "process per run" + (f", interleaved with {compare}'s code" if compare else ""))
    with tempfile.TemporaryDirectory() as tmp:
        variants: list[tuple[str, str | None]] = [("this tree", None)]
        if compare:
            ref = Path(tmp) / "ref"
            ref.mkdir()
            # The package and what its manifest links to (butler_skill/manifest/ holds links to these).
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", compare, "butler_skill", "schemas",
                                      "skill.yaml"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(ref)], input=archive, check=True)
            variants.insert(0, (compare, str(ref)))
        results: dict[str, list[dict[str, list[float]]]] = {name: [] for name, _ in variants}
        for i in range(runs):
            for name, path in variants:
                folder = Path(tmp) / f"{name.replace(' ', '-')}-{i}"
                folder.mkdir()
                env = {**os.environ, **({"PYTHONPATH": path} if path else {})}
                done = subprocess.run([sys.executable, __file__, "--phases-worker", str(n), str(folder)], env=env,
                                      capture_output=True, text=True, check=True)
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| code | open a new ledger, wall / CPU ms | plan, wall / CPU ms | read-back + answer, wall / CPU ms |"
          " plan + read-back, wall ms |")
    print("|---|---:|---:|---:|---:|")
    for name, got in results.items():
        med = {k: [statistics.median(r[k][j] * 1e3 for r in got) for j in (0, 1)]
               for k in ("open", "plan", "read_back")}
        both = statistics.median((r["plan"][0] + r["read_back"][0]) * 1e3 for r in got)
        print(f"| {name} | {med['open'][0]:.1f} / {med['open'][1]:.1f} | {med['plan'][0]:.1f} / {med['plan'][1]:.1f}"
              f" | {med['read_back'][0]:.1f} / {med['read_back'][1]:.1f} | {both:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", type=int, metavar="N", help="only spawn_agent's plan and read-back for N items")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", metavar="GIT_REF", help="with --phases: also GIT_REF's code, interleaved")
    parser.add_argument("--phases-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases_worker:
        phases_worker(int(args.phases_worker[0]), Path(args.phases_worker[1]))
        return
    print(f"machine: {machine()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.phases:
        phases(args.phases, args.runs, args.compare)
        return
    print("\nplan_agents: pure rules (decompose + stages + split_budget), best of 3")
    print("| items | dependency links | ms | µs per item | µs per (item + link) |")
    print("|---:|---:|---:|---:|---:|")
    for shape, sizes in (("ordered", (10, 100, 1_000, 10_000)), ("cycling", (10, 100, 1_000, 3_000))):
        print(f"{shape}:")
        for n in sizes:
            s, k = core(n, shape), links(n, shape)
            print(f"| {n:,} | {k:,} | {s * 1e3:.1f} | {s * 1e6 / n:.1f} | {s * 1e6 / (n + k):.2f} |", flush=True)
    print("\nplan (decompose, split, one transaction reserving every share and writing every row), ordered list,"
          " best of 3")
    print("| items | ms | µs per item |")
    print("|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (10, 100, 1_000, 10_000):
            s = planned(Path(tmp), n)
            print(f"| {n:,} | {s * 1e3:.1f} | {s * 1e6 / n:.1f} |", flush=True)
    print("\nplan_agents tool (validation, one transaction reserving every share, the answer), best of 3")
    print("| items | ms | µs per item |")
    print("|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (10, 100, 1_000, 3_000):
            s = tool(Path(tmp), n)
            print(f"| {n:,} | {s * 1e3:.1f} | {s * 1e6 / n:.1f} |", flush=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
