"""The dashboard under a real uvicorn on 127.0.0.1 (random port), with a ledger seeded through the tools."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request

from butler_skill.gateway.dashboard import DashboardSettings, dashboard_routes
from butler_skill.host.context import Context
from tests.dashboard.seed import MovingClock, env_for, seed_month

TOKEN = "bt_dashboard-test-token-0123456789"
TODAY = datetime(2026, 11, 24, 14, 5, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")


def authenticate(request: Request) -> bool:
    return request.headers.get("authorization") == f"Bearer {TOKEN}"


@dataclass
class Served:
    base_url: str
    ctx: Context
    clock: MovingClock
    folder: Path

    def client(self, *, signed_in: bool = True) -> httpx.Client:
        client = httpx.Client(base_url=self.base_url, timeout=10.0)
        if signed_in:
            client.cookies.set("butler_dashboard", TOKEN, domain="127.0.0.1", path="/dashboard")
        return client


def serve(ctx: Context, settings: DashboardSettings | None = None) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = Starlette(routes=dashboard_routes(lambda: ctx, authenticate, settings))
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
