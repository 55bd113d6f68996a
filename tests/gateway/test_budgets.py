"""Budgets at the gateway: calls bound to a session spend its allocation and rotate at 75%; calls bound to
none spend the token's daily budget; a client that hangs up, or a provider that drops, still settles."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from butler_skill.host.dispatch import call_tool
from tests.gateway.conftest import Harness, gateway_keys, start_harness
from tests.gateway.test_relay import CHAT, MESSAGES, chat, messages, no_holds, usage_rows
from tests.servers.fake_llm import FakeLLM, dropped, ok


def allocate(h: Harness, tokens: int, provider: str = "openai") -> dict[str, Any]:
    out = call_tool("allocate_tokens", {"prd_text": "gateway work", "tokens": tokens,
                                        "preferred_provider": provider}, h.ctx)
    assert out["ok"], out
    return dict(out["result"])


def session(h: Harness, session_id: str) -> dict[str, Any]:
    [row] = h.rows("SELECT * FROM sessions WHERE id = ?", session_id)
    return row


def wait_for(check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the gateway never settled"
        time.sleep(0.02)


def test_bound_calls_spend_the_session_and_rotate_its_next_calls_at_75_percent(gw: Harness) -> None:
    s = allocate(gw, 1_000)
    sid, first_key = s["session_id"], s["key_id"]
    gw.fake.script(ok(prompt_tokens=400, completion_tokens=100), ok(prompt_tokens=250, completion_tokens=50),
                   ok(prompt_tokens=10, completion_tokens=10))
    # OpenClaw sends the part of "butler/<session_id>" after the provider; the full ref works too.
    r1 = gw.post(CHAT, chat(model=sid))
    assert r1.status_code == 200 and r1.headers["x-butler-key"] == first_key
    assert session(gw, sid)["used"] == 500 and session(gw, sid)["key_id"] == first_key
    r2 = gw.post(CHAT, chat(model=f"butler/{sid}"))
    assert r2.headers["x-butler-key"] == first_key
    row = session(gw, sid)
    # 800 of the 1,000 on the first key is past 750: the session moved what it has left (200) to the other key.
    assert row["used"] == 800 and row["key_id"] != first_key and row["leg_held"] == 200
    r3 = gw.post(CHAT, chat(model=f"{sid}/gpt-test", max_tokens=50))
    assert r3.headers["x-butler-key"] == row["key_id"]
    assert gw.fake.requests[2].headers["authorization"] != gw.fake.requests[0].headers["authorization"]
    assert session(gw, sid)["used"] == 820
    events = [json.loads(e["data"]) for e in gw.rows("SELECT data FROM events WHERE kind = 'rotation'")]
    assert events == [{**events[0], "from_key_id": first_key, "to_key_id": row["key_id"], "reason": "threshold"}]
    assert [r["total_tokens"] for r in usage_rows(gw)] == [500, 300, 20]
    counters = gw.counters()
    assert counters[first_key] == {"used": 800, "reserved": 0}
    assert counters[row["key_id"]] == {"used": 20, "reserved": 180}  # the session's leg is still held there


def test_a_bound_call_gets_at_most_what_its_session_has_left(gw: Harness) -> None:
    s = allocate(gw, 300)
    gw.fake.script(ok(prompt_tokens=30, completion_tokens=20))
    body = chat(model=s["session_id"], max_tokens=5_000)
    raw = json.dumps(body).encode()
    r = httpx.post(gw.url + CHAT, content=raw, headers={**gw.headers(), "content-type": "application/json"})
    assert r.status_code == 200
    prompt = -(-len(raw) // 4)
    sent = gw.fake.requests[0].json  # an OpenAI key: the current chat API's field, never both
    assert sent["max_completion_tokens"] == 300 - prompt and "max_tokens" not in sent


def test_a_spent_session_answers_a_budget_error_the_agent_can_act_on(gw: Harness) -> None:
    s = allocate(gw, 200)
    sid = s["session_id"]
    gw.fake.script(ok(prompt_tokens=150, completion_tokens=40))
    assert gw.post(CHAT, chat(model=sid)).status_code == 200
    for path, body in ((CHAT, chat(model=sid)), (CHAT, chat(model=sid, stream=True))):
        r = gw.post(path, body)
        assert r.status_code == 429
        err = r.json()["error"]
        assert err["code"] == "butler_budget_exhausted"
        assert sid in err["message"] and "190 of 200" in err["message"] and "allocate_tokens" in err["message"]
    assert len(gw.fake.requests) == 1
    assert session(gw, sid)["used"] == 190


def test_an_anthropic_session_is_spent_through_the_messages_api(gw: Harness) -> None:
    s = allocate(gw, 2_000, provider="anthropic")
    assert s["key_id"] == "an-1"
    gw.fake.script(ok(prompt_tokens=100, completion_tokens=30))
    r = gw.post(MESSAGES, messages(model=f"butler/{s['session_id']}", stream=True))
    assert r.status_code == 200
    assert session(gw, s["session_id"])["used"] == 130
    wrong = gw.post(CHAT, chat(model=s["session_id"]))
    assert wrong.status_code == 400 and "/v1/messages" in wrong.json()["error"]["message"]


def test_unknown_and_closed_sessions(gw: Harness) -> None:
    r = gw.post(CHAT, chat(model="ses_doesnotexist"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_session"
    s = allocate(gw, 500)
    assert call_tool("record_usage", {"session_id": s["session_id"], "request_id": "r1", "input_tokens": 1,
                                      "output_tokens": 1, "close": True}, gw.ctx)["ok"]
    r = gw.post(CHAT, chat(model=s["session_id"]))
    assert r.status_code == 429 and "closed" in r.json()["error"]["message"]
    assert gw.fake.requests == []


@pytest.fixture
def tight(tmp_path: Path, fake: FakeLLM) -> Iterator[Harness]:
    # Room in the token's daily budget for one call of 100 output tokens and its prompt, not two.
    h = start_harness(tmp_path, fake, gateway_keys(fake), daily_budget=140)
    try:
        yield h
    finally:
        h.server.close()
        h.ctx.close()


def test_unbound_calls_spend_the_tokens_daily_budget(tight: Harness) -> None:
    tight.fake.script(ok(prompt_tokens=20, completion_tokens=10))
    assert tight.post(CHAT, chat()).status_code == 200
    r = tight.post(CHAT, chat())
    assert r.status_code == 429
    message = r.json()["error"]["message"]
    assert "daily budget" in message and "30 of 140" in message and "butler/<session_id>" in message
    assert len(tight.fake.requests) == 1
    # A smaller call still fits: the budget is what is neither used nor held, not a count of calls.
    tight.fake.script(ok(prompt_tokens=20, completion_tokens=10))
    assert tight.post(CHAT, chat(max_tokens=40)).status_code == 200
    no_holds(tight)


def test_a_client_hanging_up_half_way_cancels_upstream_and_settles_pessimistically(gw: Harness) -> None:
    gw.fake.script(ok(text="z" * 400, chunk_chars=4, chunk_delay_s=0.05, prompt_tokens=12, completion_tokens=100))
    with httpx.Client(timeout=30) as client, client.stream("POST", gw.url + CHAT, json=chat(max_tokens=300,
                                                                                          stream=True),
                                                           headers=gw.headers()) as r:
        assert r.status_code == 200
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen == 3:
                break
    wait_for(lambda: bool(usage_rows(gw)))
    [row] = usage_rows(gw)
    assert row["estimated"] == 1
    assert row["output_tokens"] == 300  # the whole cap: the provider may bill what it generated after we left
    assert row["input_tokens"] > 0
    wait_for(lambda: gw.rows("SELECT COUNT(*) AS n FROM sessions WHERE state = 'open'")[0]["n"] == 0)
    no_holds(gw)


@pytest.mark.parametrize("path,body", [(CHAT, chat(max_tokens=64, stream=True)),
                                       (MESSAGES, messages(max_tokens=64, stream=True))])
def test_a_provider_dropping_the_stream_ends_ours_and_settles_an_estimate(gw: Harness, path: str,
                                                                          body: dict[str, Any]) -> None:
    gw.fake.script(dropped(after_chunks=4, text="a" * 80, chunk_chars=4, prompt_tokens=9, completion_tokens=50))
    r = gw.post(path, body)
    assert r.status_code == 200  # the status line was sent before the drop; the body ends early
    [row] = usage_rows(gw)
    assert row["estimated"] == 1 and row["output_tokens"] == 64
    no_holds(gw)
