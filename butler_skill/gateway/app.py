"""The gateway's HTTP face: a Starlette app speaking the OpenAI Chat Completions and Anthropic Messages APIs.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /v1/messages`` (also without ``/v1``, for
clients whose base URL already ends in it), ``GET /healthz``. Every route but the health check needs a Butler
access token (``Authorization: Bearer`` or ``x-api-key``); a request without a valid one is answered 401
before anything is read or reserved, so it costs nothing.

``create_app(ctx, extra_routes=...)`` lets other fronts (the dashboard) mount their routes on the same
process; ``authenticate_request(request)`` is the one token check they reuse.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from butler_skill.gateway import wire
from butler_skill.gateway.service import Gateway, GatewaySettings
from butler_skill.gateway.wire import Format
from butler_skill.host.context import Context
from butler_skill.store.access_tokens import AccessToken
from butler_skill.subagents.clients import ClientFactory

__all__ = ["authenticate_request", "create_app", "presented_token"]


def presented_token(request: Request) -> str | None:
    """The credential a request carries: ``Authorization: Bearer <t>``, else ``x-api-key: <t>``."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def authenticate_request(request: Request) -> AccessToken | None:
    """The active access token a request presents, else None (missing, unknown or revoked)."""
    gateway: Gateway = request.app.state.gateway
    return gateway.authenticate(presented_token(request))


def _unauthorized(fmt: Format) -> Response:
    return wire.error(fmt, 401, "Butler: a valid Butler access token is required (Authorization: Bearer <token> "
                      "or x-api-key); create one with `butler token create`", code="invalid_access_token")


def _endpoint(fmt: Format) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        token = authenticate_request(request)
        if token is None:
            return _unauthorized(fmt)
        gateway: Gateway = request.app.state.gateway
        return await gateway.handle(request, fmt, token)

    return endpoint


async def models(request: Request) -> Response:
    if authenticate_request(request) is None:
        return _unauthorized("openai")
    gateway: Gateway = request.app.state.gateway
    seen: dict[str, dict[str, Any]] = {}
    for key in gateway.models():
        seen.setdefault(key.model, {"id": key.model, "object": "model", "created": 0, "owned_by": key.provider,
                                    "wire_format": key.wire_format})
    data = [{"id": "auto", "object": "model", "created": 0, "owned_by": "butler"}, *seen.values()]
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_app(ctx: Context, *, factory: ClientFactory | None = None, settings: GatewaySettings | None = None,
               extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The gateway app on `ctx`'s configuration and ledger. `factory` (provider clients) is closed with the
    app when the app made it."""
    own_factory = factory is None
    clients = factory or ClientFactory(ctx.config, demo_faults=ctx.demo_faults, run_id=ctx.new_id("gw"))
    gateway = Gateway(ctx, clients, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if own_factory:
                await clients.aclose()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/v1/chat/completions", _endpoint("openai"), methods=["POST"]),
        Route("/chat/completions", _endpoint("openai"), methods=["POST"]),
        Route("/v1/messages", _endpoint("anthropic"), methods=["POST"]),
        Route("/messages", _endpoint("anthropic"), methods=["POST"]),
        *extra_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    app.state.ctx = ctx
    return app
