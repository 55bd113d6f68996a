"""A process killed (SIGKILL) between storing an intent and hearing back from Circle.

The child sends an approved top-up through the real adapter to the loopback Circle, which records the
transfer and then hangs (or hangs before acting on it). The test kills the child meanwhile. After the
restart, reconciliation asks Circle by refId: a transfer found is recorded once; one not found becomes
failed-safe after the grace period. Nothing is ever paid again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from butler_skill.core.treasury import IntentState
from butler_skill.errors import Conflict
from tests.treasury.conftest import Harness, ledger_is_balanced

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent("""
    import os, sys
    from datetime import datetime, timezone
    from pathlib import Path
    from butler_skill.store.db import Database
    from butler_skill.treasury.service import TreasuryService

    folder, intent_id = Path(sys.argv[1]), sys.argv[2]
    moment = datetime.fromisoformat(sys.argv[3])
    service = TreasuryService.open(Database(folder / "state.db"), dict(os.environ), clock=lambda: moment,
                                   new_id=lambda prefix: prefix + "_child")
    print("sending", flush=True)
    service.execute(intent_id, dry_run=False, actor="person:child")
    print("returned", flush=True)  # never reached: the server hangs until the child is killed
""")


@pytest.mark.parametrize("when", ["after", "before"])
def test_sigkill_while_sending_is_reconciled_without_paying_twice(harness: Harness, when: str) -> None:
    s = harness.service()
    harness.set_credit("20")
    _, (intent,) = s.propose()
    s.approve(intent.id, "person:ada")
    harness.circle.fault_transfer("hang", when=when)

    env = {**os.environ, **harness.env()}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(harness.folder), intent.id, harness.clock.now.isoformat()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "sending"
        if when == "after":
            assert harness.circle.transfer_recorded.wait(timeout=30), "the child never reached Circle"
        else:
            _wait_for_post(harness)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    harness.circle.release.set()  # let the hung handler thread go

    conn = sqlite3.connect(harness.folder / "state.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    restarted = harness.service()
    assert restarted.store.intent(intent.id).state is IntentState.SENDING  # stored before the call, unresolved
    assert harness.circle.transfer_count == (1 if when == "after" else 0)
    # executing again is refused: only reconciliation may resolve an unknown outcome
    with pytest.raises(Conflict, match="reconcile"):
        restarted.execute(intent.id, dry_run=False)

    report = restarted.reconcile()
    if when == "after":
        assert [r.kind for r in report.resolved] == ["resolved_complete"]
        assert restarted.store.intent(intent.id).state is IntentState.COMPLETE
        assert len(restarted.store.entries(intent.id)) == 4
    else:
        assert [p.kind for p in report.pending] == ["too_recent"]
        harness.clock.advance(minutes=5)
        report = restarted.reconcile()
        assert [r.kind for r in report.resolved] == ["resolved_failed_safe"]
        assert restarted.store.entries(intent.id) == []

    # a second reconciliation and a second execution change nothing and pay nothing
    restarted.reconcile()
    if when == "after":
        assert restarted.execute(intent.id, dry_run=False).outcome == "complete"
    else:
        with pytest.raises(Conflict):
            restarted.execute(intent.id, dry_run=False)
    assert harness.circle.transfer_count == (1 if when == "after" else 0)
    assert len(harness.circle.transfers_for(intent.id)) <= 1
    assert ledger_is_balanced(restarted)


def _wait_for_post(harness: Harness) -> None:
    import time

    for _ in range(3000):
        if harness.circle.transfer_posts():
            return
        time.sleep(0.01)
    raise AssertionError("the child never sent the transfer")
