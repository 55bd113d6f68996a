"""Token management tools: allocate, list keys, monitor, status, record usage, rotate."""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from butler_skill import sessions
from butler_skill.core import estimate as est
from butler_skill.core import pricing, selection
from butler_skill.core.reporting import ProviderUsage
from butler_skill.core.usage import Usage
from butler_skill.errors import InvalidInput, NoCapacity, PolicyDenied, UnknownKey
from butler_skill.handlers import reads
from butler_skill.handlers.bounds import (
    MAX_CALL_REQUESTS,
    MAX_DAY_TOKENS,
    Budget,
    Id,
    Money,
    PathText,
    ProviderName,
    TokenCount,
    both_given,
    given,
)
from butler_skill.models import Alert, Event, KeyState, RotationReason, SessionInfo
from butler_skill.sessions import RotationOutcome
from butler_skill.store.protocol import Grant
from butler_skill.trusted import trusted

if TYPE_CHECKING:
    from butler_skill.host.context import Context

_STRICT = ConfigDict(extra="forbid")


# ---- allocate_tokens ---------------------------------------------------------------------------
class AllocateTokensInput(BaseModel):
    """Exactly one of prd_path / prd_text, or a bare token count (the PRD is then optional)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [given("prd_path"), given("prd_text"), given("tokens")],
            "not": both_given("prd_path", "prd_text"),
        },
    )

    prd_path: PathText | None = Field(default=None, description=(
        "Path of a PRD file to estimate: a regular file of at most 4 MiB inside the working directory or a "
        "folder listed in BUTLER_READ_PATHS."))
    prd_text: str | None = Field(default=None, min_length=1, max_length=1_000_000,
                                 description="The PRD text itself.")
    preferred_provider: ProviderName | None = Field(default=None, description="Try this provider's keys first.")
    tokens: Budget | None = Field(default=None, description="Reserve exactly this many (then no PRD is needed).")
    label: str | None = Field(default=None, max_length=200, description="A name for the session.")

    @model_validator(mode="after")
    def _one_source(self) -> AllocateTokensInput:
        if self.prd_path is not None and self.prd_text is not None:
            raise ValueError("give prd_path or prd_text, not both")
        if self.prd_path is None and self.prd_text is None and self.tokens is None:
            raise ValueError("give prd_path, prd_text or tokens")
        return self


class AllocateTokensOutput(BaseModel):
    success: bool
    session_id: str
    key_id: str
    provider: str
    model: str
    allocated: int
    rotation_threshold: int
    available_capacity: int = Field(description="Tokens still free on the chosen key today, after this.")
    cost_estimate: float = Field(description="USD at the key's prices.")
    estimate: est.Estimate


def _prd_text(ctx: Context, inp: AllocateTokensInput) -> str:
    if inp.prd_text is not None:
        return inp.prd_text
    from butler_skill.safe_read import confined, read_text

    if inp.prd_path is None:
        return ""
    if "\0" in inp.prd_path:
        raise InvalidInput("prd_path contains a NUL character", path="prd_path")
    path = Path(inp.prd_path)
    path = path if path.is_absolute() else ctx.cwd / path
    # Confined to the working directory and the folders the person lists in BUTLER_READ_PATHS, so a caller
    # cannot read (and learn the size of) any file the process can.
    roots = [ctx.cwd, *(Path(p).expanduser() for p in ctx.env.get("BUTLER_READ_PATHS", "").split(os.pathsep) if p)]
    if not confined(path, roots):
        # A well-formed path the person's settings do not allow: a policy answer, not invalid_input.
        raise PolicyDenied(
            f"prd_path {inp.prd_path} is outside the working directory {ctx.cwd} and BUTLER_READ_PATHS; move the "
            "file there, add its folder to BUTLER_READ_PATHS, or pass prd_text", path="prd_path")
    return read_text(path, "prd", label="prd_path", errors="replace", path="prd_path")


def allocate_tokens(ctx: Context, inp: AllocateTokensInput) -> AllocateTokensOutput:
    # A bare count needs no PRD; with one, the count still wins (the PRD is only read to be estimated).
    estimate = est.given_estimate(inp.tokens) if inp.tokens else est.estimate_prd(_prd_text(ctx, inp))
    cfg = ctx.config
    keys = cfg.resolved()
    if inp.preferred_provider and not any(k.provider == inp.preferred_provider for k in keys):
        # Which providers exist is configuration, not the input's shape: not invalid_input.
        raise UnknownKey(f"no key of provider {inp.preferred_provider!r} is configured",
                         provider=inp.preferred_provider, path="/preferred_provider")
    now = ctx.now()
    need = estimate.total
    input_share = estimate.input_tokens / max(1, estimate.input_tokens + estimate.output_tokens)
    result = sessions.open_session(ctx, need, label=inp.label, preferred_provider=inp.preferred_provider,
                                   input_share=input_share, now=now, keys=keys)
    if not isinstance(result, Grant):
        largest = selection.largest_available(result, now)
        raise NoCapacity(
            f"no single key has {need} tokens left today (largest available: {largest}); "
            "split the work with plan_agents or ask for fewer tokens",
            requested=need, largest_available=largest, hint="split",
        )
    key = next(k for k in keys if k.id == result.key.key_id)
    # Every value below is typed by the code that made it: built without validating again (butler_skill/trusted.py;
    # the host still checks the answer against the tool's output schema).
    return trusted(AllocateTokensOutput, {
        "success": True,
        "session_id": result.session_id,
        "key_id": key.id,
        "provider": key.provider,
        "model": key.model,
        "allocated": need,
        "rotation_threshold": result.rotation_threshold,
        "available_capacity": result.key.remaining - need,
        "cost_estimate": est.estimate_cost(estimate, key.price_in_per_m, key.price_out_per_m),
        "estimate": estimate,
    })


# ---- get_available_keys ------------------------------------------------------------------------
class GetAvailableKeysInput(BaseModel):
    model_config = _STRICT

    provider: ProviderName | None = Field(default=None, description="Only keys of this provider.")
    min_tokens: int = Field(default=1, ge=0, le=MAX_DAY_TOKENS,
                            description="Only keys with at least this many tokens left.")


class GetAvailableKeysOutput(BaseModel):
    day: str
    keys: list[KeyState]


def key_states(ctx: Context, now: datetime) -> list[KeyState]:
    return [KeyState.model_validate(s) for s in reads.key_states(ctx, now)]


def get_available_keys(ctx: Context, inp: GetAvailableKeysInput) -> GetAvailableKeysOutput:
    # One implementation in plain values (handlers/reads.py, what a cold `butler call` runs), validated here.
    return GetAvailableKeysOutput.model_validate(reads.get_available_keys(ctx, inp.model_dump()))


# ---- monitor_usage -----------------------------------------------------------------------------
class MonitorUsageInput(BaseModel):
    model_config = _STRICT


class MonitorUsageOutput(BaseModel):
    day: str
    keys_by_provider: dict[str, ProviderUsage]
    total: ProviderUsage


def monitor_usage(ctx: Context, inp: MonitorUsageInput) -> MonitorUsageOutput:
    return MonitorUsageOutput.model_validate(reads.monitor_usage(ctx, inp.model_dump()))


# ---- get_status --------------------------------------------------------------------------------
class GetStatusInput(BaseModel):
    model_config = _STRICT

    history_limit: int = Field(default=10, ge=0, le=500, description="How many recent rotations to list.")


class TokenSummary(BaseModel):
    total_keys: int
    active_keys: int
    active_sessions: int
    pending_alerts: int
    keys_by_provider: dict[str, ProviderUsage]
    keys_over_limit: dict[str, int] = Field(
        default_factory=dict,
        description="Key id -> tokens counted today past its limit (late or unreserved usage); empty when none.",
    )


class GetStatusOutput(BaseModel):
    day: str
    tokens: TokenSummary
    sessions: list[SessionInfo]
    alerts: list[Alert]
    rotation_history: list[Event]


def get_status(ctx: Context, inp: GetStatusInput) -> GetStatusOutput:
    return GetStatusOutput.model_validate(reads.get_status(ctx, inp.model_dump()))


# ---- rotate_key --------------------------------------------------------------------------------
class RotateKeyInput(BaseModel):
    model_config = _STRICT

    session_id: Id
    new_key_id: Id | None = Field(default=None, description="Move to this key; otherwise Butler chooses.")
    reason: RotationReason = Field(default="manual", description="Why: manual, threshold, or what the "
                                   "provider answered (rate_limit, quota_exhausted, auth).")
    retry_after_s: float | None = Field(default=None, ge=0, le=86_400, allow_inf_nan=False,
                                        description="The provider's Retry-After.")


class RotateKeyOutput(BaseModel):
    rotation: RotationOutcome
    session: SessionInfo


def rotate_key(ctx: Context, inp: RotateKeyInput) -> RotateKeyOutput:
    outcome, session = sessions.rotate_or_rest(
        ctx, inp.session_id, inp.reason, new_key_id=inp.new_key_id, retry_after_s=inp.retry_after_s
    )
    return RotateKeyOutput(rotation=outcome, session=session)


# ---- record_usage ------------------------------------------------------------------------------
class RecordUsageInput(BaseModel):
    model_config = _STRICT

    session_id: Id
    request_id: Id = Field(description="The provider's response id: settling it twice changes nothing.")
    input_tokens: TokenCount = Field(description="Uncached input tokens (OpenAI: prompt_tokens minus cached).")
    output_tokens: TokenCount = Field(description="Output tokens, reasoning included.")
    cache_read_tokens: TokenCount = Field(default=0, description="Input tokens served from cache.")
    cache_write_tokens: TokenCount = Field(default=0, description="Input tokens written to cache (Anthropic), "
                                           "5-minute and 1-hour writes together.")
    cache_write_1h_tokens: TokenCount = Field(default=0, description="The part of cache_write_tokens written for "
                                              "1 hour (Anthropic usage.cache_creation.ephemeral_1h_input_tokens); "
                                              "more than cache_write_tokens counts as all of them (as submit_result "
                                              "does).")
    web_search_requests: int = Field(default=0, ge=0, le=MAX_CALL_REQUESTS, description="Server-side searches "
                                     "billed per request (Anthropic usage.server_tool_use.web_search_requests).")
    tool_fees: Money = Field(default=Decimal(0), description="Other server-side tool fees in USD, as billed.")
    cost: Money | None = Field(default=None, description="USD, when the provider reported it (OpenRouter "
                               "usage.cost): a number or a decimal string, kept exactly.")
    upstream_cost: Money | None = Field(default=None, description="OpenRouter cost_details."
                                        "upstream_inference_cost: what the upstream provider billed.")
    byok: bool = Field(default=False, description="OpenRouter is_byok: upstream_cost was billed to the user's own "
                       "provider key, so it is added to cost.")
    estimated: bool = Field(default=False, description="True when the figures are an estimate.")
    close: bool = Field(default=False, description="End the session and release what it still holds.")


class RecordUsageOutput(BaseModel):
    duplicate: bool
    session: SessionInfo
    cost: float = Field(description="USD of this call as a JSON number (every digit of cost_exact below $1,000).")
    cost_exact: str = Field(description="USD of this call, exact, as a decimal string.")
    threshold_crossed: bool
    alert: Alert | None = None
    rotation: RotationOutcome | None = None
    status: Literal["ok", "rotated", "rotate_recommended", "closed"]


def record_usage(ctx: Context, inp: RecordUsageInput) -> RecordUsageOutput:
    usage = Usage.of(input_tokens=inp.input_tokens, output_tokens=inp.output_tokens,
                     cache_read_tokens=inp.cache_read_tokens, cache_write_tokens=inp.cache_write_tokens,
                     cache_write_1h_tokens=inp.cache_write_1h_tokens, web_search_requests=inp.web_search_requests,
                     tool_fees_usd=inp.tool_fees, cost_usd=inp.cost, upstream_cost_usd=inp.upstream_cost,
                     byok=inp.byok, estimated=inp.estimated)
    done = sessions.settle(ctx, inp.session_id, inp.request_id, usage, close=inp.close)
    return RecordUsageOutput(duplicate=done.duplicate, session=done.session, cost=pricing.usd(done.cost),
                             cost_exact=str(done.cost), threshold_crossed=done.threshold_crossed, alert=done.alert,
                             rotation=done.rotation, status=done.status)
