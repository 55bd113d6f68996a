"""`butler treasury ...`: approval only by a person, at a terminal or with --yes."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from butler_skill.core.treasury import IntentState
from butler_skill.host.cli_treasury import add_treasury_parser, run_treasury
from butler_skill.host.context import Context
from butler_skill.store.treasury import Intent
from tests.treasury.conftest import OR_DEST, SECRETS, Harness
from tests.treasury.test_handlers import make_ctx


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def ctx(harness: Harness) -> Iterator[Context]:
    context = make_ctx(harness, USER="ada")
    yield context
    context.close()


def run(ctx: Context, *argv: str, stdin: io.StringIO | None = None) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="butler")
    add_treasury_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["treasury", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_treasury(args, ctx, stdin=stdin or io.StringIO(""), stdout=out, stderr=err)
    for secret in SECRETS:
        assert secret not in out.getvalue() + err.getvalue()
    return code, out.getvalue(), err.getvalue()


def proposal(harness: Harness) -> Intent:
    harness.set_credit("20")
    _, (intent,) = harness.service().propose()
    return intent


def state(harness: Harness, intent: Intent) -> IntentState:
    return harness.service().store.intent(intent.id).state


def test_approve_shows_terms_and_refuses_without_a_terminal(ctx: Context, harness: Harness) -> None:
    intent = proposal(harness)
    code, out, err = run(ctx, "approve", intent.id)
    assert code == 2 and "not a terminal" in err and "--yes" in err
    assert "200 USDC" in out and OR_DEST in out and "per transaction 250" in out and "daily 500" in out
    assert state(harness, intent) is IntentState.PROPOSED


def test_approve_at_a_terminal(ctx: Context, harness: Harness) -> None:
    intent = proposal(harness)
    code, out, _ = run(ctx, "approve", intent.id, stdin=Terminal("no\n"))
    assert code == 1 and "not approved" in out and state(harness, intent) is IntentState.PROPOSED
    code, out, _ = run(ctx, "approve", intent.id, stdin=Terminal("yes\n"))
    assert code == 0 and f"butler treasury execute {intent.id}" in out
    approved = harness.service().store.intent(intent.id)
    assert approved.state is IntentState.APPROVED and approved.approved_by == "person:ada"


def test_approve_yes_execute_reconcile(ctx: Context, harness: Harness) -> None:
    intent = proposal(harness)
    assert run(ctx, "approve", intent.id, "--yes")[0] == 0
    code, out, _ = run(ctx, "execute", intent.id, "--dry-run")
    assert code == 0 and "would_execute" in out and harness.circle.transfer_posts() == []
    code, out, _ = run(ctx, "execute", intent.id)
    assert code == 0 and "complete" in out and harness.circle.transfer_count == 1
    code, out, _ = run(ctx, "reconcile")
    assert code == 0 and "no differences" in out and "ledger balances" in out
    harness.circle.add_external_transfer(harness.circle.usdc / 10, "0x3333333333333333333333333333333333333333")
    code, out, _ = run(ctx, "reconcile", "--json")
    report: dict[str, Any] = json.loads(out)
    assert code == 1 and [d["kind"] for d in report["differences"]] == ["unrecorded_transfer"]


def test_reject_reset_policy_status(ctx: Context, harness: Harness) -> None:
    intent = proposal(harness)
    code, out, _ = run(ctx, "reject", intent.id)
    assert code == 0 and "rejected" in out and state(harness, intent) is IntentState.REJECTED
    code, _, err = run(ctx, "approve", intent.id, "--yes")
    assert code == 1 and "conflict" in err
    code, out, _ = run(ctx, "reset-breaker")
    assert code == 0 and "re-armed" in out
    code, out, _ = run(ctx, "policy")
    policy = json.loads(out)
    assert code == 0 and policy["caps"]["daily"] == "500" and policy["network"] == "testnet"
    code, out, _ = run(ctx, "status")
    assert code == 0 and "network: testnet" in out and "1000 USDC" in out and "breaker: closed" in out
    code, out, _ = run(ctx, "status", "--json", "--offline")
    assert code == 0 and json.loads(out)["recent"][0]["state"] == "rejected"


def test_errors_exit_codes(ctx: Context, harness: Harness) -> None:
    code, _, err = run(ctx, "approve", "topup_nope", "--yes")
    assert code == 2 and "not_found" in err  # an intent id that names nothing
    intent = proposal(harness)
    code, _, err = run(ctx, "execute", intent.id)
    assert code == 1 and "approval_required" in err


def test_through_the_butler_entry_point(harness: Harness, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from butler_skill.host.cli import main

    ctx = make_ctx(harness)
    for name, value in ctx.env.items():
        monkeypatch.setenv(name, value)
    intent = proposal(harness)
    argv = ["--keys", str(ctx.keys_path), "--state", str(ctx.state_path), "treasury"]
    assert main([*argv, "approve", intent.id]) == 2  # pytest's stdin is not a terminal
    assert main([*argv, "approve", intent.id, "--yes"]) == 0
    assert main([*argv, "policy"]) == 0
    out = capsys.readouterr().out
    assert "approved" in out and '"auto_approve_max": "0"' in out
    for secret in SECRETS:
        assert secret not in out
    ctx.close()
