"""Treasury tools: `treasury_status` (look) and `treasury_autobuy` (evaluate, propose, execute).

The agent can look, propose and execute what is already approved; it can never approve. Approval is a
person's act (`butler treasury approve ID`), except top-ups the policy itself auto-approves
(`auto_approve_max`, default 0: none). `dry_run` defaults to true and then nothing moves money.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from butler_skill.core.treasury import Decision, IntentState, caps_left, decimal_str
from butler_skill.errors import ButlerError, InvalidInput
from butler_skill.handlers.bounds import NO_NUL, given
from butler_skill.store.treasury import Intent
from butler_skill.treasury.config import PolicyView, policy_view
from butler_skill.treasury.service import CreditReport, ExecutionResult, TreasuryService, WalletReport

if TYPE_CHECKING:
    import httpx

    from butler_skill.host.context import Context

_STRICT = ConfigDict(extra="forbid")


def _money(value: Decimal | None) -> str | None:
    return decimal_str(value) if value is not None else None


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ---- shared output pieces --------------------------------------------------------------------------
class TokenBalanceOut(BaseModel):
    symbol: str
    blockchain: str | None
    amount: str = Field(description="Decimal string.")


class WalletOut(BaseModel):
    wallet_id: str | None
    usdc: str | None = Field(description="USDC balance of the payment token (decimal string); null if unknown.")
    balances: list[TokenBalanceOut]
    error: str | None = None


class CreditOut(BaseModel):
    provider: str
    remaining: str | None = Field(description="Remaining prepaid credit in USD; null when nobody could tell.")
    source: Literal["api", "ledger", "unknown"]
    threshold: str = Field(description="A top-up is proposed below this.")
    api_remaining: str | None = None
    api_detail: str | None = None
    ledger_remaining: str | None = Field(default=None,
                                         description="Opening credit + top-ups recorded - LLM cost recorded.")
    bought: str = Field(description="USDC recorded as sent to this provider.")
    error: str | None = None


class SpendOut(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD.")
    month: str = Field(description="UTC month, YYYY-MM.")
    sent_day: str
    sent_month: str
    in_flight: str = Field(description="Sent but not yet final.")
    pending: str = Field(description="Proposed or approved, not sent.")
    daily_cap_left: str
    monthly_cap_left: str


class BreakerOut(BaseModel):
    consecutive_failures: int
    max_consecutive_failures: int
    tripped: bool = Field(description="True: nothing is sent until a person runs `butler treasury reset-breaker`.")
    tripped_at: str | None = None


class IntentOut(BaseModel):
    id: str
    provider: str
    amount: str
    destination: str
    state: str
    reason: str
    auto_approved: bool
    approved_by: str | None
    provider_tx_id: str | None
    provider_state: str | None
    failure: str | None
    created_at: str
    sent_at: str | None
    settled_at: str | None


def intent_out(i: Intent) -> IntentOut:
    return IntentOut(id=i.id, provider=i.provider, amount=decimal_str(i.amount), destination=i.destination,
                     state=i.state.value, reason=i.reason, auto_approved=i.auto_approved, approved_by=i.approved_by,
                     provider_tx_id=i.provider_tx_id, provider_state=i.provider_state, failure=i.failure,
                     created_at=i.created_at.isoformat(), sent_at=_time(i.sent_at), settled_at=_time(i.settled_at))


def _wallet_out(w: WalletReport) -> WalletOut:
    return WalletOut(wallet_id=w.wallet_id, usdc=_money(w.usdc), error=w.error,
                     balances=[TokenBalanceOut(symbol=b.symbol, blockchain=b.blockchain, amount=decimal_str(b.amount))
                               for b in w.balances])


def _credit_out(service: TreasuryService, c: CreditReport) -> CreditOut:
    return CreditOut(provider=c.provider, remaining=_money(c.remaining), source=c.source,
                     threshold=decimal_str(service.policy.threshold_for(c.provider)),
                     api_remaining=_money(c.api_remaining), api_detail=c.api_detail,
                     ledger_remaining=_money(c.ledger_remaining), bought=decimal_str(c.bought), error=c.error)


# ---- wiring to the context -------------------------------------------------------------------------
def _recorded_costs(ctx: Context) -> dict[str, Decimal]:
    """LLM cost recorded so far per provider (all time), for ledger-derived credit.

    The token ledger owns that figure (`Ledger.costs_by_key()`, key id -> USD, all days); the keys file maps
    keys to providers.
    """
    provider_of = {k.id: k.provider for k in ctx.config.keys}
    totals: dict[str, Decimal] = {}
    for key_id, cost in ctx.ledger.costs_by_key().items():
        provider = provider_of.get(key_id)
        if provider is not None:
            totals[provider] = totals.get(provider, Decimal("0")) + Decimal(str(cost))
    return totals


def _openrouter_key(ctx: Context) -> str | None:
    """An OpenRouter API key from the keys file, to read its limit when there is no management key."""
    try:
        for key in ctx.config.resolved():
            if key.provider == "openrouter" and key.enabled:
                secret = ctx.config.secret_for(key.id)
                if secret:
                    return secret
    except ButlerError:
        return None
    return None


@contextmanager
def open_service(ctx: Context, *, http: httpx.Client | None = None) -> Iterator[TreasuryService]:
    """The treasury service on the context's ledger, environment, clock and LLM cost recorded so far, closed after
    the block (the tools, the CLI and the dashboard open it here). `http`: a client to share (the dashboard keeps
    one), else the service makes one when it first calls out."""
    service = TreasuryService.open(ctx.db, ctx.env, clock=ctx.now, new_id=ctx.new_id, http=http,
                                   recorded_costs=_recorded_costs(ctx), openrouter_api_key=_openrouter_key(ctx))
    try:
        yield service
    finally:
        service.close()


# ---- treasury_status -------------------------------------------------------------------------------
class TreasuryStatusInput(BaseModel):
    model_config = _STRICT

    recent: int = Field(default=10, ge=0, le=100, description="How many recent top-up intents to list.")
    refresh: bool = Field(default=True, description="Ask Circle and the providers for live figures; false reads "
                                                    "only Butler's ledger.")


class TreasuryStatusOutput(BaseModel):
    network: str = Field(description="testnet (TEST_API_KEY:), mainnet (LIVE_API_KEY:) or unknown.")
    wallet: WalletOut
    credits: list[CreditOut]
    policy: PolicyView
    spend: SpendOut
    breaker: BreakerOut
    recent: list[IntentOut]
    awaiting_approval: list[str] = Field(description="Intent ids a person must approve or reject.")
    warnings: list[str]


def treasury_status(ctx: Context, inp: TreasuryStatusInput) -> TreasuryStatusOutput:
    with open_service(ctx) as service:
        return build_status(service, recent=inp.recent, refresh=inp.refresh)


def build_status(service: TreasuryService, *, recent: int, refresh: bool) -> TreasuryStatusOutput:
    policy = service.policy
    wallet = service.wallet() if refresh else WalletReport(wallet_id=service.config.circle_wallet_id, usdc=None,
                                                           error="not refreshed")
    credits = service.credits(live=refresh)
    spend = service.spend()
    day_left, month_left = caps_left(policy, spend)
    breaker = service.store.breaker()
    warnings: list[str] = []
    if not policy.enabled:
        warnings.append("automatic top-ups are disabled (enabled: false)")
    if breaker.tripped:
        warnings.append("the breaker is open: run `butler treasury reset-breaker` after checking the failures")
    if not service.config.policy_file_found:
        warnings.append("no policy file: every payment is denied (no caps, no destinations)")
    if wallet.error and refresh:
        warnings.append(f"wallet: {wallet.error}")
    warnings.extend(f"{c.provider}: {c.error}" for c in credits if c.error)
    unresolved = service.store.intents(states=(IntentState.SENDING, IntentState.UNKNOWN))
    if unresolved:
        warnings.append(f"{len(unresolved)} top-up(s) with an unknown outcome: run `butler treasury reconcile`")
    return TreasuryStatusOutput(
        network=service.config.network,
        wallet=_wallet_out(wallet),
        credits=[_credit_out(service, c) for c in credits],
        policy=policy_view(service.config),
        spend=SpendOut(day=spend.day, month=spend.month, sent_day=decimal_str(spend.sent_day),
                       sent_month=decimal_str(spend.sent_month), in_flight=decimal_str(spend.in_flight),
                       pending=decimal_str(spend.pending),
                       daily_cap_left=decimal_str(day_left), monthly_cap_left=decimal_str(month_left)),
        breaker=BreakerOut(consecutive_failures=breaker.consecutive_failures,
                           max_consecutive_failures=policy.max_consecutive_failures, tripped=breaker.tripped,
                           tripped_at=_time(breaker.tripped_at)),
        recent=[intent_out(i) for i in service.recent(recent)],
        awaiting_approval=[i.id for i in service.store.intents(states=(IntentState.PROPOSED,))],
        warnings=warnings,
    )


# ---- treasury_autobuy ------------------------------------------------------------------------------
class TreasuryAutobuyInput(BaseModel):
    # intent_id only goes with mode=execute; the schema says so (works in every JSON Schema draft).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"not": given("intent_id")}, {"required": ["mode"], "properties": {"mode": {"const": "execute"}}},
    ]})

    mode: Literal["evaluate", "propose", "execute"] = Field(
        default="evaluate",
        description="evaluate: what the policy would do. propose: store top-up intents for a person to approve "
                    "(auto-approved only under auto_approve_max). execute: send approved intents.",
    )
    dry_run: bool = Field(default=True, description="True (default): report only; nothing is stored or sent.")
    intent_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=NO_NUL,
                                  description="With mode=execute: send only this (approved) intent.")


class DecisionOut(BaseModel):
    provider: str
    action: Literal["none", "propose", "deny"]
    reason: str
    amount: str | None = None
    destination: str | None = None
    auto_approve: bool = Field(default=False, description="Within auto_approve_max: no person needed.")


class ExecutionOut(BaseModel):
    intent_id: str
    outcome: Literal["complete", "submitted", "failed", "unknown", "not_sent", "would_execute", "denied",
                     "needs_approval"]
    message: str
    provider: str | None = None
    amount: str | None = None
    provider_tx_id: str | None = None


class TreasuryAutobuyOutput(BaseModel):
    mode: str
    dry_run: bool
    network: str
    decisions: list[DecisionOut]
    proposed: list[IntentOut] = Field(description="Intents stored by this call.")
    executions: list[ExecutionOut]
    awaiting_approval: list[str] = Field(description="Intent ids waiting for `butler treasury approve ID`.")
    message: str


def _decision_out(d: Decision) -> DecisionOut:
    return DecisionOut(provider=d.provider, action=d.action, reason=d.reason, amount=_money(d.amount),
                       destination=d.destination, auto_approve=d.auto_approve)


def _execution_out(r: ExecutionResult) -> ExecutionOut:
    return ExecutionOut(intent_id=r.intent_id, outcome=r.outcome, message=r.message, provider=r.provider,
                        amount=_money(r.amount), provider_tx_id=r.provider_tx_id)


def treasury_autobuy(ctx: Context, inp: TreasuryAutobuyInput) -> TreasuryAutobuyOutput:
    with open_service(ctx) as service:
        return run_autobuy(service, inp)


def run_autobuy(service: TreasuryService, inp: TreasuryAutobuyInput) -> TreasuryAutobuyOutput:
    decisions: list[Decision] = []
    proposed: list[Intent] = []
    executions: list[ExecutionResult] = []
    if inp.intent_id is not None:
        if inp.mode != "execute":
            raise InvalidInput("intent_id is only for mode=execute", path="/intent_id")
        executions.append(service.execute(inp.intent_id, dry_run=inp.dry_run, actor="agent"))
    elif inp.mode == "evaluate" or (inp.mode == "propose" and inp.dry_run):
        decisions = list(service.evaluate().decisions)
    elif inp.mode == "propose":
        evaluation, proposed = service.propose(actor="agent")
        decisions = list(evaluation.decisions)
    elif inp.dry_run:  # execute, dry run: what would be proposed, and what would be sent
        decisions = list(service.evaluate().decisions)
        executions = service.execute_approved(dry_run=True, actor="agent")
        for d in decisions:
            if d.action == "propose" and d.auto_approve:
                executions.append(ExecutionResult(intent_id="(new)", outcome="would_execute", provider=d.provider,
                                                  amount=d.amount, destination=d.destination,
                                                  message="within auto_approve_max: would be proposed and sent"))
    else:
        evaluation, proposed = service.propose(actor="agent")
        decisions = list(evaluation.decisions)
        executions = service.execute_approved(dry_run=False, actor="agent")

    awaiting = [i.id for i in service.store.intents(states=(IntentState.PROPOSED,))]
    return TreasuryAutobuyOutput(
        mode=inp.mode, dry_run=inp.dry_run, network=service.config.network,
        decisions=[_decision_out(d) for d in decisions], proposed=[intent_out(i) for i in proposed],
        executions=[_execution_out(r) for r in executions], awaiting_approval=awaiting,
        message=_summary(inp, decisions, proposed, executions, awaiting),
    )


def _summary(inp: TreasuryAutobuyInput, decisions: list[Decision], proposed: list[Intent],
             executions: list[ExecutionResult], awaiting: list[str]) -> str:
    parts: list[str] = []
    if inp.dry_run:
        parts.append("dry run: nothing was stored or sent")
    wanted = [d for d in decisions if d.action == "propose"]
    denied = [d for d in decisions if d.action == "deny"]
    if decisions and not wanted and not denied:
        parts.append("no top-up needed")
    if wanted and inp.dry_run:
        parts.append(f"{len(wanted)} top-up(s) would be proposed")
    if denied:
        parts.append(f"{len(denied)} denied by policy")
    if proposed:
        parts.append(f"{len(proposed)} intent(s) stored")
    done = [e for e in executions if e.outcome == "complete"]
    if done:
        parts.append(f"{len(done)} top-up(s) complete")
    odd = [e for e in executions if e.outcome in ("unknown", "failed", "not_sent")]
    if odd:
        parts.append(f"{len(odd)} not confirmed (see executions)")
    if awaiting:
        parts.append(f"{len(awaiting)} awaiting a person's approval: butler treasury approve ID")
    return "; ".join(parts) or "nothing to do"
