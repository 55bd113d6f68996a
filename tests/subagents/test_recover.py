"""`sessions.recover`: the one path the runner and the gateway take after a provider refuses a call."""

from __future__ import annotations

from pathlib import Path

from butler_skill import sessions
from butler_skill.core import inflight
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import write_keys

POLICY = inflight.RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, max_attempts=3)


def ctx_with(tmp_path: Path, *scopes: str) -> tuple[Context, str]:
    write_keys(tmp_path / "keys.json", [
        {"id": f"k{i}", "provider": "groq", "key_env": "X", "scope": scope, "limits": {"tokens_per_day": 100_000}}
        for i, scope in enumerate(scopes)
    ])
    ctx = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")
    envelope = call_tool("allocate_tokens", {"tokens": 10_000}, ctx)
    assert envelope["ok"], envelope
    return ctx, envelope["result"]["session_id"]


def resting(ctx: Context) -> set[str]:
    return {v.key_id for v in ctx.ledger.key_views(ctx.config.resolved(), ctx.now()) if v.cooling(ctx.now())}


def test_a_rate_limit_moves_the_session_to_another_account(tmp_path: Path) -> None:
    ctx, sid = ctx_with(tmp_path, "a", "b")
    before = ctx.ledger.session(sid).key_id
    step = sessions.recover(ctx, sid, failure="rate_limit", retry_after_s=30, attempt=1, consecutive_rate_limits=1,
                            jitter=0.0, policy=POLICY)
    assert step.give_up is None and step.rotation is not None and step.rotation.rotated
    assert ctx.ledger.session(sid).key_id != before
    assert resting(ctx) == {before}


def test_giving_up_on_a_refused_key_still_rests_it(tmp_path: Path) -> None:
    # Out of attempts with nowhere to go: the call ends, and the key the provider refused must not be picked
    # up by the next call meanwhile (the runner used to leave it usable; the gateway did not).
    ctx, sid = ctx_with(tmp_path, "a")
    key = ctx.ledger.session(sid).key_id
    step = sessions.recover(ctx, sid, failure="auth", retry_after_s=None, attempt=POLICY.max_attempts,
                            consecutive_rate_limits=0, jitter=0.0, policy=POLICY)
    assert step.give_up is not None
    assert resting(ctx) == {key}


def test_a_server_error_waits_on_the_same_key_and_rests_nothing(tmp_path: Path) -> None:
    ctx, sid = ctx_with(tmp_path, "a", "b")
    step = sessions.recover(ctx, sid, failure="server", retry_after_s=None, attempt=1, consecutive_rate_limits=0,
                            jitter=0.0, policy=POLICY)
    assert step.give_up is None and step.rotation is None and 0 < step.wait_s <= POLICY.max_delay_s
    assert resting(ctx) == set()
