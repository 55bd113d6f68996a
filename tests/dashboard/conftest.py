"""The dashboard under a real uvicorn on 127.0.0.1 (random port), with a ledger seeded through the tools."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request

from butler_skill.gateway.app import presented_token
from butler_skill.gateway.dashboard import COOKIE, DashboardSettings, dashboard_routes
from butler_skill.host.context import Context
from butler_skill.store.access_tokens import AccessToken, AccessTokenStore
from tests.dashboard.seed import MovingClock, env_for, seed_month

TOKEN = "butler_at_dashboard-test-token-0123456789"  # an access token in the ledger (`serve` creates it)
TODAY = datetime(2026, 11, 24, 14, 5, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")


def authenticator(ctx: Context) -> Callable[[Request], AccessToken | None]:
    """The gateway's token check on the ledger's access tokens (without the gateway's cache: a revocation counts
    at once)."""
    store = AccessTokenStore(ctx.db)
    if store.find(TOKEN) is None:
        store.create(token_id="tok-dashboard", name="dashboard tests", secret=TOKEN, role="agent",
                     daily_budget=1_000_000, now=ctx.now())

    def authenticate(request: Request) -> AccessToken | None:
        secret = presented_token(request)
        return store.find(secret) if secret else None

    return authenticate


@dataclass
class Served:
    base_url: str
    ctx: Context
    clock: MovingClock
    folder: Path

    def client(self, *, signed_in: bool = True) -> httpx.Client:
        """An HTTP client; `signed_in`: it has signed in with the token and holds the session's cookie."""
        client = httpx.Client(base_url=self.base_url, timeout=10.0)
        if signed_in:
            client.cookies.set(COOKIE, self.sign_in(), domain="127.0.0.1", path="/dashboard")
        return client

    def sign_in(self, token: str = TOKEN) -> str:
        """Sign in with `token` as a browser does (`/dashboard?token=...`); the session value of the cookie."""
        r = httpx.get(f"{self.base_url}/dashboard", params={"token": token}, follow_redirects=False, timeout=10.0)
        assert r.status_code == 303, r.text
        return r.cookies[COOKIE]


def serve(ctx: Context, settings: DashboardSettings | None = None) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = Starlette(routes=dashboard_routes(lambda: ctx, authenticator(ctx), settings))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def _start(folder: Path, seeded: bool) -> Iterator[Served]:
    clock = MovingClock(TODAY)
    ctx = Context(env=env_for(folder), clock=clock)
    if seeded:
        seed_month(ctx, clock, TODAY)
    server, thread, url = serve(ctx, DashboardSettings(poll_seconds=0.2, max_seconds=60.0))
    try:
        yield Served(base_url=url, ctx=ctx, clock=clock, folder=folder)
    finally:
        server.should_exit = True
        thread.join(15)
        ctx.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A month of history, today's sessions, a resting account and a planned task."""
    yield from _start(tmp_path, seeded=True)


@pytest.fixture
def served_empty(tmp_path: Path) -> Iterator[Served]:
    yield from _start(tmp_path, seeded=False)


def chromium_or_skip() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs the chromium package before the tests")
    pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install chromium); browser tests need it")


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser() -> Iterator[Any]:
    """The system Chromium under Playwright (never a downloaded browser). Request it after `served`, so the
    browser closes its event streams before the server stops."""
    executable = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield b
        b.close()
