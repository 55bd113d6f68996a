"""No secret (Circle API key, entity secret, OpenRouter management key) in any output, error, log line or
DB row, through every path, including failures. Handlers are called directly: the host's redaction layer
is a second net, not the reason this passes."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from butler_skill.errors import ButlerError
from butler_skill.handlers.treasury import (
    TreasuryAutobuyInput,
    TreasuryStatusInput,
    treasury_autobuy,
    treasury_status,
)
from butler_skill.host.context import Context
from tests.treasury.conftest import CIRCLE_API_KEY, ENTITY_SECRET, MANAGEMENT_KEY, Harness
from tests.treasury.test_cli import run
from tests.treasury.test_handlers import OR_API_KEY, make_ctx

# Each secret and recognisable pieces of it (the halves of a Circle key, the entity secret's bytes as base64).
NEEDLES = [CIRCLE_API_KEY, *CIRCLE_API_KEY.split(":")[1:], ENTITY_SECRET, ENTITY_SECRET[:32], ENTITY_SECRET[32:],
           MANAGEMENT_KEY, MANAGEMENT_KEY.removeprefix("sk-or-v1-"), OR_API_KEY]


def database_text(folder: Path) -> str:
    conn = sqlite3.connect(folder / "state.db")
    text = "\n".join(conn.iterdump())
    conn.close()
    raw = b"".join(p.read_bytes() for p in folder.glob("state.db*"))
    return text + raw.decode("latin-1")


def test_no_secret_leaves_through_any_path(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    import base64

    needles = [*NEEDLES, base64.b64encode(bytes.fromhex(ENTITY_SECRET)).decode()]
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    seen: list[str] = []
    ctx = make_ctx(harness, USER="ada")

    def call(context: Context, inp: TreasuryStatusInput | TreasuryAutobuyInput) -> None:
        try:
            if isinstance(inp, TreasuryAutobuyInput):
                seen.append(treasury_autobuy(context, inp).model_dump_json())
            else:
                seen.append(treasury_status(context, inp).model_dump_json())
        except ButlerError as exc:
            seen.append(str(exc.to_payload()))

    def tool(inp: TreasuryStatusInput | TreasuryAutobuyInput) -> None:
        call(ctx, inp)

    tool(TreasuryStatusInput())
    harness.set_credit("10")
    tool(TreasuryAutobuyInput(mode="propose", dry_run=False))
    intent_id = harness.service().store.intents()[0].id
    tool(TreasuryAutobuyInput(mode="execute", intent_id=intent_id, dry_run=False))  # approval_required
    seen.extend(run(ctx, "approve", intent_id, "--yes")[1:])
    # faults: 500, a dropped answer, then a breaker-tripping failure path
    harness.circle.fault_transfer("status", status=500)
    harness.circle.fault_transfer("drop", when="after")
    tool(TreasuryAutobuyInput(mode="execute", dry_run=False))
    seen.extend(run(ctx, "reconcile", "--json")[1:])
    seen.extend(run(ctx, "status", "--json")[1:])
    seen.extend(run(ctx, "policy")[1:])
    tool(TreasuryStatusInput())

    # wrong credentials and a wrong entity secret: the errors name the variable, never its value
    for bad in ({"CIRCLE_API_KEY": CIRCLE_API_KEY[:-4] + "0000"}, {"CIRCLE_ENTITY_SECRET": "zz" + ENTITY_SECRET[2:]},
                {"OPENROUTER_MANAGEMENT_KEY": MANAGEMENT_KEY[:-4] + "0000"}):
        other = make_ctx(harness, **bad)
        call(other, TreasuryStatusInput())
        call(other, TreasuryAutobuyInput(mode="execute", dry_run=False))
        needles.append(next(iter(bad.values())))
        other.close()
    ctx.close()

    everything = "\n".join(seen) + caplog.text + database_text(harness.folder)
    assert "complete" in everything and "approval_required" in everything  # the paths really ran
    for needle in needles:
        assert needle not in everything, f"a secret leaked ({len(needle)} characters)"
    # the requests themselves did carry the key: the check above is not vacuous
    assert any(r.headers.get("authorization") == f"Bearer {CIRCLE_API_KEY}" for r in harness.circle.requests)
