"""Shared helpers for the benchmarks: machine description and percentiles."""

from __future__ import annotations

import os
import platform
import statistics


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_us(samples_s: list[float]) -> str:
    us = [s * 1e6 for s in samples_s]
    return f"median {statistics.median(us):8.1f} µs   p99 {pct(us, 0.99):8.1f} µs   (n={len(us):,})"
