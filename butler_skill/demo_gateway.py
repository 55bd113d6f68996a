"""The gateway part of `butler demo`: a few model calls through `butler serve`'s app on loopback, bound to
a session (which rotates at 75%) and unbound (the access token's daily budget), then a refused call."""

from __future__ import annotations

from typing import Any

import httpx

from butler_skill.gateway.app import create_app
from butler_skill.gateway.server import BackgroundServer
from butler_skill.gateway.tokens import create_token
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.tables import fmt_int
from butler_skill.store.access_tokens import AccessTokenStore


def run_gateway_demo(ctx: Context, say: Any) -> None:
    say("Gateway: the agent's own model calls go through Butler (butler serve, OpenAI wire format, loopback)")
    token, secret = create_token(ctx, "demo agent", daily_budget=20_000)
    alloc = call_tool("allocate_tokens", {"prd_text": "gateway demo", "tokens": 360, "label": "gateway"}, ctx)
    assert alloc["ok"], alloc
    sid = alloc["result"]["session_id"]
    with BackgroundServer(create_app(ctx)) as server, httpx.Client(base_url=server.url + "/v1", timeout=30,
                                                                    headers={"authorization": f"Bearer {secret}"}) as c:
        say(f"   gateway on {server.url}/v1; access token id {token.id} (the agent holds only a Butler token)")
        say(f"   session {sid}: 360 tokens; a sub-agent spawned with model butler/{sid} spends it:")
        for n in range(1, 6):
            r = c.post("/chat/completions", json={
                "model": f"butler/{sid}", "max_tokens": 60, "stream": n % 2 == 0,
                "messages": [{"role": "user", "content": f"Step {n} of the market brief, briefly."}]})
            s = ctx.ledger.session(sid)
            if r.status_code != 200:
                say(f"   call {n}: HTTP {r.status_code} {r.json()['error']['message'][:110]}")
                continue
            say(f"   call {n} ({'stream' if n % 2 == 0 else 'json'}): answered via {r.headers['x-butler-key']}; "
                f"session used {fmt_int(s.used)} of {fmt_int(s.allocated)}, next calls on {s.key_id}")
        r = c.post("/chat/completions", json={"model": "auto", "max_tokens": 200,
                                              "messages": [{"role": "user", "content": "One unbound call."}]})
        day = AccessTokenStore(ctx.db).day(token.id, ctx.now())
        say(f"   unbound call (model auto): HTTP {r.status_code} via {r.headers.get('x-butler-key')}, "
            f"{fmt_int(day.used)} tokens from the token's daily budget")
        r = c.post("/chat/completions", json={"model": "auto", "max_tokens": 50_000,
                                              "messages": [{"role": "user", "content": "Too big."}]})
        say(f"   a call asking for 50,000 output tokens: HTTP {r.status_code}: {r.json()['error']['message'][:100]}…")
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "auto", "messages": []}, timeout=10)
        say(f"   without a token: HTTP {r.status_code} (nothing reserved, nothing forwarded)")
    rotations = [e for e in ctx.ledger.events("rotation", 10) if e.session_id == sid]
    for e in rotations:
        say(f"   rotation: {e.data['from_key_id']} -> {e.data['to_key_id']} ({e.data['reason']}, at 75% of the "
            "session's tokens on that key)")
    call_tool("record_usage", {"session_id": sid, "request_id": "gateway-demo-close", "input_tokens": 0,
                               "output_tokens": 0, "close": True}, ctx)
