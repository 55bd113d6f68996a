"""The read tools' light path (store/reads.py through host/quick.py) on both ledgers: SQLite and PostgreSQL give
the full path's envelope and the Ledger's own figures after a run through every kind of step."""

from __future__ import annotations

import json

from butler_skill.host import quick
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import Clock
from tests.host.test_light_reads import READS, _oracle, _play

STEPS = [("allocate", 5_000), ("allocate", 2_000), ("report", 8_000, "0.0012"), ("rotate", "rate_limit", 7_200.0),
         ("alert", "note"), ("allocate", 300), ("report", 200, None), ("tick", 3_600), ("close",),
         ("rotate", "manual", None), ("allocate", 100)]


def test_light_reads_on_both_backends(ctx: Context, clock: Clock) -> None:
    _play(ctx, clock, STEPS)
    for tool, args in READS:
        light = quick.call(tool, args, ctx)
        assert light["ok"], light
        assert json.dumps(light) == json.dumps(call_tool(tool, args, ctx))
        assert light["result"] == _oracle(ctx, tool, args)
    status = quick.call("get_status", {}, ctx)["result"]
    assert status["sessions"] and status["alerts"] and status["rotation_history"]
