"""PostgreSQL ledger figures (issue 10): allocate_tokens next to one bare conditional UPDATE on the same server
in the same run, and allocation throughput with 1, 4 and 16 concurrent clients, beside SQLite.

Starts a throwaway cluster (initdb + pg_ctl, fsync on) unless --url names a server (the database must be
empty or a Butler ledger; the benchmark's tables are created and dropped).
Run: .venv/bin/python benchmarks/bench_postgres.py [--calls 3000] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.pgcluster starts the throwaway cluster
from _common import machine, pct, summary_us

from butler_skill.config import write_keys_file
from butler_skill.handlers import tokens as t
from butler_skill.host.context import Context

LIMIT = 10**12


def _ctx(folder: Path, url: str | None) -> Context:
    keys = folder / "keys.json"
    if not keys.exists():
        write_keys_file(keys, [{"id": "k1", "provider": "groq", "limits": {"tokens_per_day": LIMIT}},
                               {"id": "k2", "provider": "openai", "limits": {"tokens_per_day": LIMIT}}])
    env = {"HOME": str(folder), **({"BUTLER_DATABASE_URL": url} if url else {})}
    return Context(env=env, keys_path=keys, state_path=folder / "state.db")


def bare_update(url: str, n: int) -> list[float]:
    """One autocommitted conditional UPDATE per call: the floor any ledger on this server pays."""
    import psycopg

    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_counter")
        conn.execute("CREATE TABLE bench_counter (k TEXT PRIMARY KEY, used BIGINT NOT NULL, reserved BIGINT NOT NULL)")
        conn.execute("INSERT INTO bench_counter VALUES ('k1', 0, 0)")
        sql = "UPDATE bench_counter SET reserved = reserved + %s WHERE k = %s AND used + reserved + %s <= %s"
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            conn.execute(sql, (10, "k1", 10, LIMIT))
            samples.append(time.perf_counter() - start)
        conn.execute("DROP TABLE bench_counter")
    return samples


def allocations(folder: Path, url: str | None, n: int) -> list[float]:
    ctx = _ctx(folder, url)
    inp = t.AllocateTokensInput(prd_text="x", tokens=10)
    t.allocate_tokens(ctx, inp)  # warm: config, pool, migrations
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        t.allocate_tokens(ctx, inp)
        samples.append(time.perf_counter() - start)
    ctx.close()
    return samples


def _client(folder: str, url: str | None, n: int, start: object, ready: object, out: object) -> None:
    ctx = _ctx(Path(folder), url)
    inp = t.AllocateTokensInput(prd_text="x", tokens=10)
    t.allocate_tokens(ctx, inp)
    ready.put(1)  # type: ignore[attr-defined]
    start.wait()  # type: ignore[attr-defined]
    for _ in range(n):
        t.allocate_tokens(ctx, inp)
    ctx.close()
    out.put(n)  # type: ignore[attr-defined]


def throughput(folder: Path, url: str | None, clients: int, total: int) -> float:
    """Allocations per second with `clients` processes (each a host with its own connection or pool)."""
    _ctx(folder, url).close()
    spawn = mp.get_context("spawn")
    gate, ready, out = spawn.Event(), spawn.Queue(), spawn.Queue()
    each = max(1, total // clients)
    procs = [spawn.Process(target=_client, args=(str(folder), url, each, gate, ready, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:  # every client imported, connected and warmed up before the clock starts
        ready.get(timeout=600)
    began = time.perf_counter()
    gate.set()
    done = sum(out.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join(timeout=60)
    return done / elapsed


def _async(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "options=-c%20synchronous_commit%3Doff"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3_000)
    parser.add_argument("--throughput-calls", type=int, default=1_600)
    parser.add_argument("--url", help="an existing PostgreSQL server (default: start a throwaway cluster)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    cluster = None
    url = args.url
    if url is None:
        from tests.pgcluster import Cluster, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            print("PostgreSQL server binaries not found: install postgresql or pass --url")
            sys.exit(1)
        cluster = Cluster(bin_dir, durable=True)
        cluster.start()
        cluster.admin("CREATE DATABASE bench")
        url = cluster.url("bench")
    try:
        from psycopg import connect

        with connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(f"PostgreSQL {version} on loopback TCP, fsync on, synchronous_commit on")
        with tempfile.TemporaryDirectory() as tmp:
            bare = bare_update(url, args.calls)
            alloc = allocations(Path(tmp), url, args.calls)
            print(f"bare PG UPDATE ... WHERE used+reserved+n<=limit  {summary_us(bare)}")
            print(f"allocate_tokens on PostgreSQL (handler)        {summary_us(alloc)}")
            print(f"  ratio of medians: {statistics.median(alloc) / statistics.median(bare):.2f}x   "
                  f"ratio of p99: {pct(alloc, 0.99) / pct(bare, 0.99):.2f}x   (goal: within 3x)")
        # SQLite's WAL with synchronous=NORMAL does not fsync each commit; the nearest PostgreSQL setting is
        # synchronous_commit=off (per session, from the URL): the same pair again with it.
        fast = _async(url)
        with tempfile.TemporaryDirectory() as tmp:
            bare = bare_update(fast, args.calls)
            alloc = allocations(Path(tmp), fast, args.calls)
            print(f"bare PG UPDATE, synchronous_commit=off         {summary_us(bare)}")
            print(f"allocate_tokens on PG, synchronous_commit=off  {summary_us(alloc)}")
            print(f"  ratio of medians: {statistics.median(alloc) / statistics.median(bare):.2f}x   "
                  f"ratio of p99: {pct(alloc, 0.99) / pct(bare, 0.99):.2f}x   (goal: within 3x)")
        with tempfile.TemporaryDirectory() as tmp:
            lite = allocations(Path(tmp), None, args.calls)
            print(f"allocate_tokens on SQLite (handler)            {summary_us(lite)}")
        for clients in (1, 4, 16):
            with tempfile.TemporaryDirectory() as tmp:
                if cluster is not None:
                    name = f"tp{clients}"
                    cluster.admin(f"CREATE DATABASE {name}")
                    pg_url = cluster.url(name)
                else:
                    pg_url = url
                pg_rate = throughput(Path(tmp), pg_url, clients, args.throughput_calls)
            with tempfile.TemporaryDirectory() as tmp:
                pg_async = throughput(Path(tmp), _async(pg_url), clients, args.throughput_calls)
            with tempfile.TemporaryDirectory() as tmp:
                lite_rate = throughput(Path(tmp), None, clients, args.throughput_calls)
            print(f"throughput, {clients:2d} client process(es): PostgreSQL {pg_rate:6.0f} alloc/s, "
                  f"with synchronous_commit=off {pg_async:6.0f} alloc/s   SQLite {lite_rate:6.0f} alloc/s")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
