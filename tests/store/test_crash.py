"""A process killed with SIGKILL while holding reservations: usage survives, holds come back after the lease."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from butler_skill.host.context import Context
from tests.conftest import write_keys

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from butler_skill.handlers import tokens as t
    from butler_skill.host.context import Context
    folder = Path(sys.argv[1])
    ctx = Context(env={"HOME": str(folder), "BUTLER_LEASE_SECONDS": "600"},
                  keys_path=folder / "keys.json", state_path=folder / "state.db")
    held = [t.allocate_tokens(ctx, t.AllocateTokensInput(prd_text="x", tokens=1000)) for _ in range(3)]
    t.record_usage(ctx, t.RecordUsageInput(session_id=held[0].session_id, request_id="done-1",
                                          input_tokens=300, output_tokens=100))
    print("ready", flush=True)
    time.sleep(600)
""")


def test_sigkill_keeps_usage_and_frees_holds_after_lease(tmp_path: Path) -> None:
    write_keys(tmp_path / "keys.json", [{"id": "k", "provider": "groq", "limits": {"tokens_per_day": 10_000}}])
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    ctx = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "state.db")
    now = ctx.now()
    assert ctx.ledger.totals(now) == {"used": 400, "reserved": 2_600}  # 3 x 1000 held, 400 of one settled
    assert ctx.ledger.expire_leases(now) == 0  # still within the lease
    later = now + timedelta(seconds=601)
    assert ctx.ledger.expire_leases(later) == 3
    assert ctx.ledger.totals(later) == {"used": 400, "reserved": 0}
    assert [e.kind for e in ctx.ledger.events("lease_expired", 10)] == ["lease_expired"] * 3
    ctx.close()
