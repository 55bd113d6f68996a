"""Each example runs as a user would run it (a subprocess of this venv's python) and prints true figures.

The assertions re-derive the figures from what the example printed: if Butler's arithmetic, rotation or
aggregation broke, the printed numbers would stop agreeing with each other.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"


def run_example(name: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTLER_")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def num(text: str) -> int:
    return int(text.replace(",", ""))


def one(pattern: str, out: str) -> re.Match[str]:
    found = list(re.finditer(pattern, out, re.MULTILINE))
    assert len(found) == 1, f"expected one line matching {pattern!r} in:\n{out}"
    return found[0]


def test_every_example_is_listed() -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert scripts == ["01_token_allocation.py", "02_spawn_subagents.py", "03_key_rotation.py",
                       "04_openclaw_plan_loop.py"]
    readme = (EXAMPLES / "README.md").read_text("utf-8")
    for name in scripts:
        assert name in readme


def test_01_token_allocation() -> None:
    out = run_example("01_token_allocation.py")
    alloc = one(r"allocated ([\d,]+) tokens on (\S+) \(demo/[^)]+\), rotation threshold ([\d,]+)", out)
    allocated, first_key, threshold = num(alloc[1]), alloc[2], num(alloc[3])
    assert threshold == allocated * 3 // 4

    steps = list(re.finditer(r"^record_usage resp-(\d): \+([\d,]+) tokens, session used ([\d,]+) of ([\d,]+) "
                             r"on (\S+) \(status (\w+)\)", out, re.MULTILINE))
    assert [int(m[1]) for m in steps] == [1, 2, 3, 4]
    step = num(steps[0][2])
    running = 0
    for m in steps:
        running += num(m[2])
        assert num(m[3]) == running and num(m[4]) == allocated
        # Before the threshold the session stays; the report that crosses it rotates.
        assert m[6] == ("rotated" if running >= threshold else "ok")
        assert (m[5] == first_key) == (running < threshold)
    rotated = one(r"ROTATED (\S+) -> (\S+), ([\d,]+) tokens of the allocation moved", out)
    assert rotated[1] == first_key and rotated[2] != first_key
    assert num(rotated[3]) == allocated - running  # what the session had not used yet moved with it
    assert re.search(rf"ALERT: .*used {running} of {allocated} tokens on {first_key} \(threshold {threshold}\)", out)

    assert f"duplicate=True, session used still {running:,}" in out
    assert "closed: state closed, held 0" in out
    reported = num(one(r"reported in total: ([\d,]+) tokens", out)[1])
    assert reported == running == 4 * step
    assert "get_status: 3 keys, 0 open sessions, 1 rotation(s)" in out
    assert f"rotation {first_key} -> {rotated[2]} (threshold)" in out
    total = one(r"monitor_usage total: used ([\d,]+), reserved ([\d,]+)", out)
    assert num(total[1]) == reported and num(total[2]) == 0
    demo = one(r"monitor_usage demo: capacity ([\d,]+), used ([\d,]+), reserved ([\d,]+), remaining ([\d,]+)", out)
    assert num(demo[1]) == 240_000 and num(demo[2]) == reported and num(demo[4]) == 240_000 - reported


def test_02_spawn_subagents() -> None:
    out = run_example("02_spawn_subagents.py")
    head = one(r"spawn_agent: task (\S+), budget ([\d,]+) tokens, (\d+) sub-agents", out)
    results = list(re.finditer(r"TaskResult (st-\d+): (\w+), ([\d,]+) tokens on (\S+), (\d+) attempt\(s\)", out))
    assert len(results) == int(head[3]) == 6
    assert [m[1] for m in results] == [f"st-{n}" for n in range(1, 7)]
    assert all(m[2] == "success" for m in results)
    tokens = [num(m[3]) for m in results]
    assert all(t > 0 for t in tokens)
    # The demo provider rate-limits exactly one request: one sub-agent needed a second attempt.
    assert sorted(int(m[5]) for m in results) == [1, 1, 1, 1, 1, 2]

    agg = one(r"aggregate_task_results: (\d+)/(\d+) successful, (\d+) failed, success rate (\d+)%, "
              r"total tokens ([\d,]+)", out)
    assert (int(agg[1]), int(agg[2]), int(agg[3]), int(agg[4])) == (6, 6, 0, 100)
    assert num(agg[5]) == sum(tokens) == num(one(r"sum of TaskResult tokens: ([\d,]+)", out)[1])
    assert num(agg[5]) < num(head[2])

    rot = one(r"rotation during the run: (demo-(\w)\d) -> (demo-(\w)\d) \((\w+)\)", out)
    assert rot[5] == "rate_limit" and rot[2] != rot[4]  # a rate limit moves to another account
    retried = next(m for m in results if m[5] == "2")
    assert retried[4] == rot[3]  # the retried sub-agent finished on the key it was moved to
    ledger = one(r"ledger today: used ([\d,]+), still reserved ([\d,]+)", out)
    assert num(ledger[1]) == sum(tokens) and num(ledger[2]) == 0


def _next_midnight(moment: datetime) -> str:
    return (moment + timedelta(days=1)).strftime("%Y-%m-%d 00:00")


def test_03_key_rotation() -> None:
    before = datetime.now(UTC)
    out = run_example("03_key_rotation.py")
    after = datetime.now(UTC)
    scopes = dict(re.findall(r"(demo-\w\d) \((demo-account-\w)\)", one(r"^keys: .*$", out)[0]))
    assert scopes == {"demo-a1": "demo-account-a", "demo-a2": "demo-account-a", "demo-b1": "demo-account-b"}

    start = one(r"allocate_tokens: ([\d,]+) tokens on (\S+)", out)
    manual = one(r"^manual: (\S+) -> (\S+), ([\d,]+) tokens moved", out)
    assert (manual[1], manual[2], manual[3]) == (start[2], "demo-b1", start[1])

    rl = one(r"rate_limit: (\S+) \((\S+)\) -> (\S+) \((\S+)\), \S+ rests until", out)
    assert rl[1] == "demo-b1" and rl[2] != rl[4]  # left the throttled account

    quota = one(r"quota_exhausted: (\S+) -> (\S+), \S+ parked until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", out)
    assert quota[1] == rl[3] and quota[2] not in (quota[1], "demo-b1")
    assert quota[3] in {_next_midnight(before), _next_midnight(after)}

    assert f"manual onto parked {quota[1]}: refused (no_capacity)" in out
    assert one(r"usable now: (.*)$", out)[1] == quota[2]  # one key resting, one parked
    assert f"session now on {quota[2]}, holding {start[1]} tokens" in out
    history = re.findall(r"^  (\w+): ([\w-]+) -> ([\w-]+)", out, re.MULTILINE)
    assert history == [("quota_exhausted", quota[1], quota[2]), ("rate_limit", rl[1], rl[3]),
                       ("manual", start[2], "demo-b1")]
    assert "rotation history (3 events" in out


def test_04_openclaw_plan_loop() -> None:
    out = run_example("04_openclaw_plan_loop.py")
    plan = {m[1]: (int(m[2]), [d for d in (m[4] or "").split(", ") if d])
            for m in re.finditer(r"^  (st-\d+) stage (\d+) \[\w+\] share [\d,]+ on \S+ \(\S+\)(, after (.*))?$",
                                 out, re.MULTILINE)}
    assert len(plan) == 4 and plan["st-1"] == (1, []) and plan["st-2"] == (1, [])

    submits = list(re.finditer(r"^submit_result (st-\d+) \(run (\d)\): (\w+), ([\d,]+) tokens so far", out,
                               re.MULTILINE))
    succeeded: list[str] = []
    for m in submits:
        _, deps = plan[m[1]]
        assert set(deps) <= set(succeeded), f"{m[1]} was spawned before {deps} succeeded"
        if m[3] == "success":
            succeeded.append(m[1])
    assert [(m[1], m[2], m[3]) for m in submits if m[3] != "success"] == [("st-2", "1", "failed")]
    assert [m[1] for m in submits if m[2] == "2"] == ["st-2"]  # only the failed child ran twice
    assert sorted(succeeded) == ["st-1", "st-2", "st-3", "st-4"]
    assert "retry_failed_tasks: retrying ['st-2']" in out
    assert re.search(r"respawn st-2: share [\d,]+ on \S+, new session ses_", out)

    # A sub-task's tokens are every round's: the failed run still spent money.
    last_total = {m[1]: num(m[4]) for m in submits}
    agg = one(r"aggregate_task_results: (\d+)/(\d+) successful, (\d+) failed, success rate (\d+)%, "
              r"total tokens ([\d,]+)", out)
    assert (int(agg[1]), int(agg[2]), int(agg[3]), int(agg[4])) == (4, 4, 0, 100)
    details = {m[1]: num(m[2]) for m in re.finditer(r"^  (st-\d+): success, ([\d,]+) tokens", out, re.MULTILINE)}
    assert details == last_total
    submitted = num(one(r"tokens submitted by the children: ([\d,]+)", out)[1])
    assert num(agg[5]) == sum(details.values()) == submitted
    ledger = one(r"ledger today: used ([\d,]+), still reserved ([\d,]+)", out)
    assert num(ledger[1]) == submitted and num(ledger[2]) == 0
