"""What the redactor costs: build time for N secrets, throughput on clean and echo-laden text, and the cost it
adds to each string written to the ledger.

Run: .venv/bin/python benchmarks/bench_redaction.py
"""

from __future__ import annotations

import random
import string
import time

from butler_skill.host.redaction import Redactor

ALPHA = string.ascii_letters + string.digits


def key(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(ALPHA) for _ in range(n))


def per_call(fn, text: str, seconds: float = 0.5) -> float:  # type: ignore[no-untyped-def]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(text)
        n += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    rng = random.Random(7)
    prose = " ".join(rng.choice(["the", "budget", "summary", "tokens", "provider", "ses_019a2b3c", "0.75", "key"])
                     for _ in range(20_000))
    for count in (8, 64):
        secrets = [key(rng, p, 48) for p in ("nvapi-", "gsk_", "sk-proj-", "sk-ant-api03-") for _ in range(count // 4)]
        start = time.perf_counter()
        red = Redactor(secrets)
        built = time.perf_counter() - start
        body = secrets[0][6:]
        echo = prose[:5000] + f" Incorrect key {body[3:30]} " + prose[5000:10000]
        print(f"redactor, {count} secrets: built in {built * 1000:.1f} ms, {len(red.grams):,} grams")
        for name, text in (("clean prose 100 KB", prose[:100_000]), ("prose 10 KB with an echo", echo),
                           ("id 30 chars (a ledger parameter)", "ses_019a2b3c4d5e6f7a8b9c0d1e2f"),
                           ("error 300 chars", prose[:300])):
            t = per_call(red.redact, text)
            mb = len(text) / t / 1e6
            print(f"  {name:34} {t * 1e6:10.1f} us/call  {mb:8.1f} MB/s")


if __name__ == "__main__":
    main()
