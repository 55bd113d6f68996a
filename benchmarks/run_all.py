"""Run every benchmarks/bench_*.py in turn (alphabetical), each in its own process, printing its figures.

Run: .venv/bin/python benchmarks/run_all.py [NAME ...]   (names filter by substring: `run_all.py spine subagents`)
Exit status: 0 when every script finished, 1 when any failed (the others still run).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(filters: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    return [p for p in found if not filters or any(f in p.stem for f in filters)]


def main(argv: list[str]) -> int:
    chosen = scripts(argv)
    if not chosen:
        print(f"no benchmarks/bench_*.py matches {argv}", file=sys.stderr)
        return 1
    failed: list[str] = []
    for path in chosen:
        print(f"==> {path.name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(path)], cwd=HERE.parent)
        took = time.perf_counter() - start
        print(f"<== {path.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {took:.0f} s\n", flush=True)
        if code != 0:
            failed.append(path.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
