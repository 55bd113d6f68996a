"""One model call through the gateway: bind, reserve, forward, settle, release.

A shell, like the CLI: every decision is a core rule (``core/admission`` what a request may hold,
``core/selection`` which key, ``core/inflight`` what a provider failure leads to, ``core/rotation`` when a
session moves) and every write goes through the sessions service and the store. What this module owns is the
order of things and that nothing is left held: whatever happens (success, provider failure, a client that
hangs up half-way, a bug), a request's hold is settled or released before it returns.

Unbound requests run on a short-lived session of their own (opened with the reservation, closed at the end)
and hold part of their access token's daily budget; bound requests hold part of their session's allocation
(several may be in flight at once: each holds its own part, tracked here, in this process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from butler_skill import sessions
from butler_skill.adapters.providers.base import ProviderFailure
from butler_skill.adapters.providers.relay import Upstream, open_upstream
from butler_skill.core import admission, inflight
from butler_skill.core.days import utc_day
from butler_skill.core.selection import KeyView, largest_available
from butler_skill.core.usage import Usage
from butler_skill.errors import UnknownSession
from butler_skill.gateway import wire
from butler_skill.gateway.wire import Format
from butler_skill.host.context import Context
from butler_skill.models import ResolvedKey
from butler_skill.store.access_tokens import AccessToken, AccessTokenStore, token_hash
from butler_skill.store.protocol import Grant
from butler_skill.subagents.clients import ClientFactory

log = logging.getLogger("butler.gateway")



@dataclass(frozen=True)
class GatewaySettings:
    default_max_tokens: int = admission.DEFAULT_MAX_TOKENS
    timeout_s: float = 600.0
    auth_cache_s: float = 1.0  # a revoked token stops working within this long
    policy: inflight.RetryPolicy = field(
        default_factory=lambda: inflight.RetryPolicy(base_delay_s=0.25, max_delay_s=2.0, max_attempts=3,
                                                     bad_response_attempts=1))


@dataclass
class Hold:
    """What one request holds while it is in flight, and on what."""

    session_id: str
    bound: bool
    prompt: int
    output_cap: int
    token: AccessToken
    day: str
    keys: list[ResolvedKey]  # where the request may go (its wire format, its model)
    key_id: str = ""  # the key the session was opened on ("" when not known without reading the ledger)

    @property
    def need(self) -> int:
        return admission.need(self.prompt, self.output_cap)


class Gateway:
    def __init__(self, ctx: Context, factory: ClientFactory, settings: GatewaySettings | None = None, *,
                 jitter: Callable[[], float] = random.random) -> None:
        self.ctx = ctx
        self.factory = factory
        self.settings = settings or GatewaySettings()
        self.tokens = AccessTokenStore(ctx.db)
        self.in_flight: dict[str, int] = {}  # session id -> tokens held by bound requests in flight
        self.jitter = jitter
        self._auth_cache: dict[str, tuple[AccessToken, float]] = {}
        self._keys: dict[str, ResolvedKey] | None = None
        self._models: dict[Format | None, list[ResolvedKey]] = {}
        self._serving: dict[tuple[Format, str | None], list[ResolvedKey]] = {}

    # ---- auth ---------------------------------------------------------------------------------------
    def authenticate(self, secret: str | None) -> AccessToken | None:
        if not secret:
            return None
        digest = token_hash(secret)
        hit = self._auth_cache.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        token = self.tokens.find(secret)
        if token is None:
            self._auth_cache.pop(digest, None)
            return None
        self._auth_cache[digest] = (token, time.monotonic() + self.settings.auth_cache_s)
        return token

    # ---- keys ---------------------------------------------------------------------------------------
    # The keys file is read once per process (the context's configuration), so its views are built once, not
    # on every request (with 10,000 keys each view is a pass over all of them).
    def keys(self) -> dict[str, ResolvedKey]:
        if self._keys is None:
            self._keys = {k.id: k for k in self.ctx.config.resolved()}
        return self._keys

    def models(self, fmt: Format | None = None) -> list[ResolvedKey]:
        if fmt not in self._models:
            self._models[fmt] = [k for k in self.ctx.config.resolved()
                                 if k.enabled and (fmt is None or k.wire_format == fmt)]
        return self._models[fmt]

    def serving(self, fmt: Format, model: str | None) -> list[ResolvedKey]:
        """The enabled keys of `fmt` that serve `model` (None: any)."""
        found = self._serving.get((fmt, model))
        if found is None:
            found = [k for k in self.models(fmt) if admission.serves(model, k.provider, k.model)]
            if len(self._serving) < 1_000:  # model names come from requests: keep the memo bounded
                self._serving[(fmt, model)] = found
        return found

    # ---- one request --------------------------------------------------------------------------------
    async def handle(self, request: Request, fmt: Format, token: AccessToken) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return wire.error(fmt, 400, "Butler: the request body is not JSON", code="invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not isinstance(
                body.get("messages"), list):
            return wire.error(fmt, 400, "Butler: a request needs a string 'model' and a list of 'messages'",
                              code="invalid_request")
        stream = bool(body.get("stream"))
        asked = body.get("max_completion_tokens", body.get("max_tokens"))
        wanted = admission.requested_output(asked if isinstance(asked, int) and not isinstance(asked, bool)
                                            else None, self.settings.default_max_tokens)
        prompt = admission.prompt_estimate(len(raw))
        binding = admission.bind(body["model"], request.headers.get("x-butler-session"))
        opened = self._bind_and_hold(fmt, token, binding, prompt, wanted)
        if isinstance(opened, Response):
            return opened
        hold = opened
        try:
            upstream, key = await self._forward(fmt, body, hold, stream)
        except ProviderFailure as failure:
            self._release(hold)
            return wire.upstream_error(fmt, failure)
        except BaseException:
            self._release(hold)
            raise
        if isinstance(upstream, Response):  # a refusal decided while forwarding (e.g. wrong format)
            self._release(hold)
            return upstream
        headers = {"x-butler-session": hold.session_id, "x-butler-key": key.id}
        if not stream:
            try:
                content = upstream.raw_content
                usage = upstream.upstream.usage(hold.prompt, hold.output_cap)
            finally:
                await upstream.upstream.aclose()
            try:
                self._settle(hold, key, upstream.upstream, usage)
            except Exception:  # the provider answered (and billed): the agent gets its answer regardless
                log.exception("gateway: settling a call failed")
            return Response(content, status_code=upstream.upstream.response.status_code,
                            media_type="application/json", headers=headers)
        wants_usage = fmt == "anthropic" or bool((body.get("stream_options") or {}).get("include_usage"))
        return RelayStream(self, hold, key, upstream.upstream, wants_usage, headers)

    def _bind_and_hold(self, fmt: Format, token: AccessToken, binding: admission.Binding, prompt: int,
                       wanted: int) -> Hold | Response:
        ctx = self.ctx
        now = ctx.now()
        if binding.session_id is not None:
            try:
                session = ctx.ledger.session(binding.session_id)
            except UnknownSession:
                return wire.error(fmt, 404, f"Butler: no session {binding.session_id!r}; use a session id that "
                                  "allocate_tokens or plan_agents returned", code="unknown_session")
            if session.state != "open":
                return wire.budget_error(fmt, f"Butler: session {session.session_id} is {session.state}; its "
                                         "budget can no longer be spent. Start a new one with allocate_tokens.")
            key = self.keys().get(session.key_id)
            if key is None or key.wire_format != fmt:
                other = "/v1/messages" if fmt == "openai" else "/v1/chat/completions"
                return wire.error(fmt, 400, f"Butler: session {session.session_id} runs on a key of another wire "
                                  f"format; call {other}", code="wrong_format")
            in_flight = self.in_flight.get(session.session_id, 0)
            cap = admission.session_output_cap(held=session.held, in_flight=in_flight, prompt=prompt, wanted=wanted)
            if cap < 1:
                return wire.budget_error(fmt, (
                    f"Butler: session {session.session_id} has spent its budget: {session.used} of "
                    f"{session.allocated} tokens used, {max(0, session.held - in_flight)} left for this call, "
                    f"whose prompt alone needs about {prompt}. Finish with what you have, or ask for more "
                    "(allocate_tokens, or retry_failed_tasks for a planned sub-task)."))
            hold = Hold(session.session_id, True, prompt, cap, token, utc_day(now), self.models(fmt))
            self.in_flight[session.session_id] = in_flight + hold.need
            return hold
        keys = self.serving(fmt, binding.model)
        if not keys:
            return wire.error(fmt, 404, f"Butler: no key serves model {binding.model!r} in this format; "
                              "GET /v1/models lists what does", code="model_not_found")
        hold = Hold("", False, prompt, wanted, token, utc_day(now), keys)
        # The token's hold and the request's own session are taken in one write transaction (one commit); the
        # session is opened last (on PostgreSQL its insert travels with the COMMIT).
        with sessions.transaction(ctx) as tx:
            if not AccessTokenStore(tx.db).reserve(token, hold.need, now):  # type: ignore[arg-type]
                grant: Grant | list[KeyView] | None = None
            else:
                grant = sessions.open_session(tx, hold.need, label=f"gateway:{token.id}", keys=keys, now=now,
                                              session_id=ctx.new_id("ses"))
                if not isinstance(grant, Grant):  # no key can take it: give the token's hold back at once
                    AccessTokenStore(tx.db).settle(token.id, hold.day, held=hold.need, used=0)  # type: ignore[arg-type]
        if grant is None:
            day = self.tokens.day(token.id, now)
            return wire.budget_error(fmt, (
                f"Butler: access token {token.name!r} has spent its daily budget for calls bound to no session: "
                f"{day.used} of {token.daily_budget} tokens used today and {day.reserved} held by calls in "
                f"flight; this call needs {hold.need} (prompt ~{prompt} + max_tokens {wanted}). Lower max_tokens, "
                "bind the call to a session (model 'butler/<session_id>' from allocate_tokens or plan_agents), or "
                "give the token a larger --daily-budget."))
        if not isinstance(grant, Grant):
            return wire.budget_error(fmt, (
                f"Butler: no key serving {binding.model or 'any model'} can take {hold.need} tokens now "
                f"(largest available: {largest_available(grant, now)}; keys may be resting after a provider "
                "refused them). Lower max_tokens, try again later, or add keys."))
        hold.session_id, hold.key_id = grant.session_id, grant.key.key_id
        return hold

    async def _forward(self, fmt: Format, body: dict[str, Any], hold: Hold,
                       stream: bool) -> tuple[_Opened | Response, ResolvedKey]:
        """Send to the session's key; on a failure do what ``core.inflight`` says (another key, a wait, or
        give up). Raises the last ``ProviderFailure`` when giving up."""
        ctx, policy = self.ctx, self.settings.policy
        keys = self.keys()
        attempt, rate_limits = 0, 0
        while True:
            attempt += 1
            # The key the session was opened on is known for the first attempt; after a recovery, read where
            # it moved.
            key_id = hold.key_id if attempt == 1 and hold.key_id else ctx.ledger.session(hold.session_id).key_id
            key = keys[key_id]
            if key.wire_format != fmt:  # a rotation moved the session to a key of the other format
                return wire.error(fmt, 400, f"Butler: session {hold.session_id} moved to a key of another "
                                  "wire format", code="wrong_format"), key
            client = self.factory.client_for(key)
            payload = client.relay_body(body, model=key.model, max_tokens=hold.output_cap, stream=stream)
            try:
                up = await open_upstream(client, payload, stream=stream, timeout_s=self.settings.timeout_s)
                content = b""
                if not stream:
                    try:
                        content = await up.read()
                    except BaseException:
                        await up.aclose()
                        raise
                return _Opened(up, content), key
            except ProviderFailure as failure:
                rate_limits = rate_limits + 1 if failure.kind == "rate_limit" else 0
                step = sessions.recover(ctx, hold.session_id, failure=failure.kind,
                                        retry_after_s=failure.retry_after_s, attempt=attempt,
                                        consecutive_rate_limits=rate_limits, jitter=self.jitter(), policy=policy,
                                        keys=hold.keys)
                log.info("gateway: %s on %s (attempt %d): %s", failure.kind, key.id, attempt,
                         step.give_up or ("rotated" if step.rotation and step.rotation.rotated else "retry"))
                if step.give_up is not None:
                    raise
                if step.wait_s:
                    await asyncio.sleep(step.wait_s)

    # ---- the end of a request ----------------------------------------------------------------------
    def _settle(self, hold: Hold, key: ResolvedKey, up: Upstream, usage: Usage) -> None:
        ctx = self.ctx
        # Each forwarded call is settled exactly once, so its id is Butler's own (a provider that repeats its
        # response ids must not make two calls one); the provider's id is kept in it for tracing.
        request_id = f"{ctx.new_id('gwr')}:{sessions.provider_request_id(key.id, up.state.request_id, '-')}"[:200]
        if hold.bound:
            try:
                sessions.settle(ctx, hold.session_id, request_id, usage)
            finally:
                self._release(hold)
            return
        try:
            # Usage, the end of the request's own session and the token's settlement: one write transaction.
            with sessions.transaction(ctx) as tx:
                sessions.commit(tx, hold.session_id, request_id, usage, key_id=key.id)
                self._release_unbound(tx, hold, used=usage.counted_tokens)
        except BaseException:
            self._release(hold)  # the usage could not be counted: still give back what the request held
            raise

    def _settle_stream(self, hold: Hold, key: ResolvedKey, up: Upstream) -> None:
        try:
            usage = up.usage(hold.prompt, hold.output_cap)
        except Exception:  # never leave a hold behind
            log.exception("gateway: no usage could be made of a stream; releasing its hold")
            self._release(hold)
            return
        try:
            self._settle(hold, key, up, usage)
        except Exception:
            log.exception("gateway: settling a stream failed")

    def _release(self, hold: Hold, used: int = 0) -> None:
        """Give back what the request still holds: its part of the session, or its own session and its
        part of the token's daily budget."""
        if hold.bound:
            left = self.in_flight.get(hold.session_id, 0) - hold.need
            if left > 0:
                self.in_flight[hold.session_id] = left
            else:
                self.in_flight.pop(hold.session_id, None)
            return
        with sessions.transaction(self.ctx) as tx:
            self._release_unbound(tx, hold, used)

    @staticmethod
    def _release_unbound(tx: Context, hold: Hold, used: int) -> None:
        """Inside `tx`: close the request's own session and settle its token's day."""
        if hold.session_id:
            tx.ledger.close_session(hold.session_id, tx.now())
        AccessTokenStore(tx.db).settle(hold.token.id, hold.day, held=hold.need, used=used)  # type: ignore[arg-type]


@dataclass
class _Opened:
    upstream: Upstream
    raw_content: bytes


class RelayStream(Response):
    """An SSE answer relayed event by event. Whatever ends it (the provider finishing or dropping, the
    client hanging up) the upstream request is closed and the usage settled: the provider's figures when it
    reported them, else an estimate marked ``estimated`` (pessimistic when the answer was cut off)."""

    def __init__(self, gateway: Gateway, hold: Hold, key: ResolvedKey, upstream: Upstream, wants_usage: bool,
                 headers: dict[str, str]) -> None:
        # Not Response.__init__: with no body it would declare Content-Length: 0 (a stream has none).
        self.status_code = upstream.response.status_code
        self.media_type = "text/event-stream"
        self.background = None
        self.init_headers({**headers, "cache-control": "no-cache"})
        self.gateway, self.hold, self.key, self.upstream, self.wants_usage = gateway, hold, key, upstream, wants_usage
        self.client_gone = False
        self.finished = False

    def _keep(self, data: str) -> bool:
        """Drop the usage-only chunk Butler asked for when the client did not ask for it itself."""
        if self.wants_usage or '"usage"' not in data:
            return True
        try:
            chunk = json.loads(data)
        except ValueError:
            return True
        return not (isinstance(chunk, dict) and chunk.get("choices") == [])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import anyio

        from butler_skill.adapters.providers.http import HttpError

        async def pump() -> None:
            try:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                try:
                    async for item in self.upstream.events():
                        if self._keep(item.event.data):
                            await send({"type": "http.response.body", "body": item.raw, "more_body": True})
                except HttpError as exc:  # the provider dropped the stream: end ours, settle an estimate
                    self.upstream.state.interruption = exc.kind
                await self._finish()  # settled before the client sees the end of the answer
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                self.client_gone = True
            except Exception:  # a bug must not leave the hold behind; the finally below settles
                log.exception("gateway: relaying a stream failed")
            finally:
                tg.cancel_scope.cancel()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.client_gone = True
                    tg.cancel_scope.cancel()
                    return

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                tg.start_soon(watch)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        """Close the upstream request and settle, once, even while being cancelled."""
        import anyio

        if self.finished:
            return
        self.finished = True
        with anyio.CancelScope(shield=True):
            try:
                await self.upstream.aclose()
            finally:
                self.gateway._settle_stream(self.hold, self.key, self.upstream)
