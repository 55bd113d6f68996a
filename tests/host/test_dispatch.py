"""Every token tool through the host: valid input works, invalid input is refused and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import SECRETS, Clock


def ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["ok"], envelope
    return dict(envelope["result"])


def snapshot(ctx: Context) -> str:
    with ctx.db.read() as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return json.dumps({t: [tuple(r) for r in conn.execute(f"SELECT * FROM {t}")] for t in tables})


VALID: dict[str, dict[str, Any]] = {
    "allocate_tokens": {"prd_text": "- build it\n- test it", "label": "v"},
    "get_available_keys": {},
    "monitor_usage": {},
    "get_status": {"history_limit": 3},
}

INVALID: list[tuple[str, Any, str]] = [
    ("allocate_tokens", {}, "/"),
    ("allocate_tokens", {"prd_text": "a", "prd_path": "b"}, "/"),
    ("allocate_tokens", {"prd_text": "a", "tokens": 0}, "/tokens"),
    ("allocate_tokens", {"prd_text": "a", "tokens": "many"}, "/tokens"),
    ("allocate_tokens", {"prd_text": "a", "surprise": 1}, "/"),
    ("allocate_tokens", [], "/"),
    ("get_available_keys", {"min_tokens": -1}, "/min_tokens"),
    ("monitor_usage", {"x": 1}, "/"),
    ("get_status", {"history_limit": 10_000}, "/history_limit"),
    ("record_usage", {"session_id": "s", "request_id": "r", "input_tokens": -1, "output_tokens": 0},
     "/input_tokens"),
    ("record_usage", {"session_id": "s", "input_tokens": 1, "output_tokens": 0}, "/"),
    ("rotate_key", {"session_id": "s", "reason": "because"}, "/reason"),
    ("rotate_key", {"session_id": ""}, "/session_id"),
    ("no_such_tool", {}, None),
]


@pytest.mark.parametrize(("tool", "payload"), VALID.items())
def test_valid_calls(ctx: Context, tool: str, payload: dict[str, Any]) -> None:
    ok(call_tool(tool, payload, ctx))


@pytest.mark.parametrize(("tool", "payload", "path"), INVALID)
def test_invalid_input_is_refused_and_changes_nothing(ctx: Context, tool: str, payload: Any, path: str | None) -> None:
    ok(call_tool("allocate_tokens", {"prd_text": "seed", "tokens": 100}, ctx))
    before = snapshot(ctx)
    envelope = call_tool(tool, payload, ctx)
    assert envelope["ok"] is False
    assert envelope["error"]["code"] == "invalid_input"
    assert set(envelope["error"]) == {"code", "message", "details"}
    if path is not None:
        assert envelope["error"]["details"]["path"] == path
    assert snapshot(ctx) == before


def test_full_round_through_the_host(ctx: Context, clock: Clock) -> None:
    a = ok(call_tool("allocate_tokens", {"prd_text": "x", "tokens": 4_000}, ctx))
    assert "key" not in a and a["session_id"]
    r = ok(call_tool("record_usage", {"session_id": a["session_id"], "request_id": "q1", "input_tokens": 2_500,
                                      "output_tokens": 700}, ctx))
    assert r["status"] == "rotated" and r["alert"]["kind"] == "rotation_threshold"
    st = ok(call_tool("get_status", {}, ctx))
    assert st["tokens"]["active_sessions"] == 1 and st["tokens"]["pending_alerts"] == 0
    assert st["rotation_history"][0]["data"]["from_key_id"] == a["key_id"]
    m = ok(call_tool("monitor_usage", {}, ctx))
    assert m["total"]["used_today"] == 3_200 and m["total"]["reserved"] == 800
    assert m["keys_by_provider"]["groq"]["total_capacity"] == 20_000
    rot = ok(call_tool("rotate_key", {"session_id": a["session_id"], "reason": "manual"}, ctx))
    assert rot["rotation"]["rotated"]
    unknown = call_tool("rotate_key", {"session_id": "ses_nope"}, ctx)
    assert unknown["error"]["code"] == "unknown_session"
    text = json.dumps([a, r, st, m, rot, unknown])
    assert not any(secret in text for secret in SECRETS.values())


def test_prd_path_relative_to_cwd_and_missing(ctx: Context, tmp_path) -> None:
    (tmp_path / "prd.md").write_text("- one\n- two\n- three", "utf-8")
    ctx.cwd = tmp_path
    a = ok(call_tool("allocate_tokens", {"prd_path": "prd.md"}, ctx))
    assert a["estimate"]["requirements"] == 3
    missing = call_tool("allocate_tokens", {"prd_path": "nope.md"}, ctx)
    # The path has the right shape; the file is not there: not_found (exit 2), not invalid_input.
    assert missing["error"]["code"] == "not_found" and missing["error"]["details"]["path"] == "prd_path"


def test_secret_in_an_error_is_redacted(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from butler_skill.handlers import tokens

    def leaky(c: Context, inp: Any) -> Any:
        raise RuntimeError("provider said: bad key " + SECRETS["TEST_GROQ_KEY_1"])

    monkeypatch.setattr(tokens, "monitor_usage", leaky)
    from butler_skill.host.manifest import load_manifest

    tool = load_manifest().tool("monitor_usage")
    assert tool is not None
    tool.__dict__.pop("function", None)
    try:
        envelope = call_tool("monitor_usage", {}, ctx)
    finally:
        tool.__dict__.pop("function", None)
    assert envelope["error"]["code"] == "internal"
    assert SECRETS["TEST_GROQ_KEY_1"] not in json.dumps(envelope)


def test_config_error_when_no_keys_file(tmp_path) -> None:
    ctx = Context(env={"HOME": str(tmp_path)})
    envelope = call_tool("get_status", {}, ctx)
    assert envelope["error"]["code"] == "config_error" and "butler init" in envelope["error"]["message"]
