"""The dashboard's routes mount on the gateway app and use its token check (what `butler serve` does)."""

from __future__ import annotations

from pathlib import Path

import httpx

from butler_skill.gateway.app import authenticate_request, create_app
from butler_skill.gateway.dashboard import PREFIX, dashboard_routes
from butler_skill.gateway.server import BackgroundServer
from butler_skill.gateway.tokens import create_token
from butler_skill.host.context import Context
from tests.conftest import write_keys
from tests.gateway.conftest import gateway_keys
from tests.servers.fake_llm import FakeLLM


def test_the_dashboard_shares_the_gateway_and_its_tokens(tmp_path: Path, fake: FakeLLM) -> None:
    write_keys(tmp_path / "keys.json", gateway_keys(fake))
    ctx = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")
    _, secret = create_token(ctx, "viewer")
    app = create_app(ctx, extra_routes=dashboard_routes(lambda: ctx, authenticate_request))
    with BackgroundServer(app) as server:
        assert httpx.get(server.url + PREFIX, timeout=10).status_code == 401
        ok = httpx.get(server.url + PREFIX, headers={"authorization": f"Bearer {secret}"}, timeout=10)
        assert ok.status_code == 200 and "<html" in ok.text.lower()
        chat = httpx.post(server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                          json={"model": "gpt-test", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
                          timeout=30)
        assert chat.status_code == 200
    ctx.close()
