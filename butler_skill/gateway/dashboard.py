"""The dashboard's HTTP surface: the page, its assets, JSON and CSV figures, and a live event stream.

`dashboard_routes(ctx_factory, authenticate)` returns Starlette routes the gateway mounts in `butler serve`.
Access uses the gateway's own tokens: `authenticate(request)` returns the active access token a request carries
in `Authorization: Bearer <token>` (scripts may call the API that way). A browser opens `/dashboard?token=...`
once (or types the token in the login form): that opens a dashboard session (`store.dashboard_sessions`) and its
random value, never the token, goes into an HttpOnly, SameSite=Strict cookie limited to `/dashboard` (Secure when
served over TLS) that lasts as long as the session (`DashboardSettings.session_seconds`). Every page, API call
and the event stream (on each poll) look the session up: it ends when it expires, when its token is revoked, and
when the browser signs out. The page only reads: approving a treasury intent stays a person's act in the CLI (the
page shows the command).

Handlers are synchronous (Starlette runs them in its thread pool); the store opens one SQLite connection per
thread, so one Context may serve many requests.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from butler_skill.core.days import utc_day
from butler_skill.gateway import dashboard_data as data
from butler_skill.host.context import Context
from butler_skill.store.access_tokens import AccessToken
from butler_skill.store.dashboard_sessions import SESSION_PREFIX, DashboardSessions

COOKIE = "butler_dashboard"
PREFIX = "/dashboard"
# A token travels in a header: printable ASCII without spaces, quotes, commas or semicolons.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=:-]{1,512}$")
# A session value, as `DashboardSessions.open` makes them (anything else is refused before any read).
_SESSION = re.compile("^" + SESSION_PREFIX + r"[A-Za-z0-9_-]{43}$")
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_NO_STORE = {"Cache-Control": "no-store", **_HEADERS}


@dataclass
class DashboardSettings:
    """How the event stream polls the ledger's fingerprint (cheap: a handful of indexed reads), and how often
    the page may ask Circle and the providers for live treasury figures."""

    poll_seconds: float = 1.0
    keepalive_seconds: float = 15.0
    # EventSource reconnects by itself: ending a stream now and then frees server threads of dead tabs.
    max_seconds: float = 300.0
    # Circle allows 20 GETs a second per key: answers younger than this are served again, not re-asked.
    treasury_min_seconds: float = 30.0
    # How long a sign-in lasts (absolute, from the sign-in): then the browser asks for the token again.
    session_seconds: int = 12 * 3600


def static_dir() -> Path:
    return Path(str(resources.files("butler_skill.gateway") / "static"))


def dashboard_routes(ctx_factory: Callable[[], Context], authenticate: Callable[[Request], AccessToken | None],
                     settings: DashboardSettings | None = None) -> list[Route | Mount]:
    settings = settings or DashboardSettings()
    live_lock = threading.Lock()
    live_cache: list[tuple[float, dict[str, Any]]] = []

    def authorized(request: Request) -> bool:
        if authenticate(request) is not None:
            return True
        value = request.cookies.get(COOKIE)
        if not value or _SESSION.match(value) is None:
            return False
        ctx = ctx_factory()
        return DashboardSessions(ctx.db).token_of(value, ctx.now()) is not None

    def login_with(request: Request, token: str) -> Response:
        found = authenticate(_with_bearer(request, token)) if token and _TOKEN.match(token) else None
        if found is None:
            return _html("login.html", status=401, failed=True)
        ctx = ctx_factory()
        value = DashboardSessions(ctx.db).open(found.id, ctx.now(), timedelta(seconds=settings.session_seconds))
        # Redirect so the token leaves the address bar and the history; the session's cookie stands for it now.
        response = RedirectResponse(PREFIX, status_code=303, headers=_NO_STORE)
        response.set_cookie(COOKIE, value, max_age=settings.session_seconds, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    def denied() -> JSONResponse:
        return JSONResponse({"ok": False, "error": {"code": "unauthorized", "message": "open /dashboard and sign "
                             "in with a Butler access token", "details": {}}}, status_code=401, headers=_NO_STORE)

    def page(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            return login_with(request, token)
        if not authorized(request):
            return _html("login.html", status=401)
        return _html("index.html")

    async def login(request: Request) -> Response:
        body = (await request.body())[:4096].decode("utf-8", "replace")
        token = (parse_qs(body).get("token") or [""])[0].strip()
        return await run_in_threadpool(login_with, request, token)

    def logout(request: Request) -> Response:
        value = request.cookies.get(COOKIE)
        if value and _SESSION.match(value):  # the session ends here, not only in this browser
            DashboardSessions(ctx_factory().db).close(value)
        response = RedirectResponse(PREFIX, status_code=303, headers=_NO_STORE)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    def json_endpoint(build: Callable[[Context], Any]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            if not authorized(request):
                return denied()
            ctx = ctx_factory()
            etag = _etag(data.version(ctx) + request.url.path)
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag, **_NO_STORE})
            payload = build(ctx).model_dump(mode="json")
            return JSONResponse(payload, headers={"ETag": etag, **_NO_STORE})
        return endpoint

    def treasury_live(request: Request) -> Response:
        if not authorized(request):
            return denied()
        with live_lock:  # one request at a time reaches Circle; the others wait for its answer
            if not live_cache or time.monotonic() - live_cache[0][0] >= settings.treasury_min_seconds:
                live_cache[:] = [(time.monotonic(), data.live_treasury(ctx_factory()).model_dump(mode="json"))]
            payload = live_cache[0][1]
        return JSONResponse(payload, headers=_NO_STORE)

    def csv_endpoint(rows: Callable[[Context], list[list[Any]]], name: str) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            if not authorized(request):
                return denied()
            ctx = ctx_factory()
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(_safe_cells(r) for r in rows(ctx))
            filename = f"butler-{name}-{utc_day(ctx.now())}.csv"
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"', **_NO_STORE})
        return endpoint

    async def events(request: Request) -> Response:
        if not authorized(request):
            return denied()
        ctx = ctx_factory()

        async def stream_versions() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            last = None
            started = quiet = time.monotonic()
            while time.monotonic() - started < settings.max_seconds:
                if not await run_in_threadpool(authorized, request):
                    return  # signed out, expired or revoked: the stream ends (the page then finds out)
                current = await run_in_threadpool(data.version, ctx)
                if current != last:
                    last = current
                    quiet = time.monotonic()
                    yield f"event: version\ndata: {json.dumps({'version': _etag(current)})}\n\n"
                elif time.monotonic() - quiet >= settings.keepalive_seconds:
                    quiet = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(settings.poll_seconds)

        return StreamingResponse(stream_versions(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no", **_NO_STORE})

    return [
        Route(PREFIX, page, methods=["GET"]),
        Route(PREFIX + "/login", login, methods=["POST"]),
        Route(PREFIX + "/logout", logout, methods=["POST"]),
        Route(PREFIX + "/api/snapshot", json_endpoint(data.snapshot), methods=["GET"]),
        Route(PREFIX + "/api/history", json_endpoint(data.history), methods=["GET"]),
        Route(PREFIX + "/api/treasury/live", treasury_live, methods=["GET"]),
        Route(PREFIX + "/api/history.csv", csv_endpoint(data.history_csv_rows, "history"), methods=["GET"]),
        Route(PREFIX + "/api/spend.csv", csv_endpoint(data.spend_csv_rows, "spend"), methods=["GET"]),
        Route(PREFIX + "/api/events", events, methods=["GET"]),
        Mount(PREFIX + "/static", app=StaticFiles(directory=static_dir()), name="dashboard-static"),
    ]


def _with_bearer(request: Request, token: str) -> Request:
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"authorization", b"cookie")]
    headers.append((b"authorization", b"Bearer " + token.encode("ascii")))
    return Request({**request.scope, "headers": headers})


def _html(name: str, *, status: int = 200, failed: bool = False) -> HTMLResponse:
    text = (static_dir() / name).read_text("utf-8")
    if name == "login.html":
        text = text.replace("{{failed}}", "failed" if failed else "")
    return HTMLResponse(text, status_code=status, headers=_NO_STORE)


def _etag(version: str) -> str:
    return '"' + hashlib.sha256(version.encode()).hexdigest()[:20] + '"'


def _safe_cells(row: list[Any]) -> list[Any]:
    """A spreadsheet runs cells that start with = + - @ as formulas: quote labels a caller could choose."""
    return ["'" + c if isinstance(c, str) and c[:1] in ("=", "+", "-", "@") else c for c in row]
