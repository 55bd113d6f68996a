"""The treasury's orchestration: look, decide, propose, approve, execute, reconcile.

Rules live in `core.treasury`; state in `store.treasury`; wire formats in the adapters. This module puts
them in order, and owns the one ordering that matters for money:

1. a proposal is stored as an intent, with its own idempotency key, before any call;
2. it is sent only when approved (by a person, or by policy under `auto_approve_max`), and only after the
   policy was checked again inside the same transaction that marks it `sending`;
3. every attempt re-sends the stored body with the same key; an answer that never came makes the intent
   `unknown`, and only reconciliation (asking Circle by refId / transaction id) resolves it, never a new
   payment;
4. a completed transfer is recorded once, as balanced double-entry postings.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict

from butler_skill.adapters.wallet_facts import TokenBalance
from butler_skill.core import treasury as rules
from butler_skill.core.treasury import (
    ZERO,
    Breaker,
    Decision,
    IntentFacts,
    IntentState,
    ProviderCredit,
    Situation,
    Spend,
    decimal_str,
    same_address,
)
from butler_skill.errors import ApprovalRequired, ConfigError, Conflict, PolicyDenied, ProviderError
from butler_skill.store.db import Database
from butler_skill.store.treasury import Intent, NewIntent, TreasuryStore
from butler_skill.treasury.config import TreasuryConfig, load_treasury_config

# httpx and the Circle and OpenRouter clients are imported where a call needs the network (`open` with a key set,
# a transfer, a reconciliation): a status read that calls nobody loads none of them (cold `treasury_status`).
if TYPE_CHECKING:
    import httpx

    from butler_skill.adapters.circle import CircleClient, CircleTransaction
    from butler_skill.adapters.openrouter import OpenRouterClient

log = logging.getLogger("butler.treasury")

Outcome = Literal["complete", "submitted", "failed", "unknown", "not_sent", "would_execute", "denied",
                  "needs_approval"]
UNKNOWN_GRACE = timedelta(minutes=2)  # a transfer this young may not be listed by Circle yet
RECONCILE_RECHECK = 100  # how many settled intents reconciliation re-checks against Circle


class CreditReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: str
    remaining: Decimal | None
    source: Literal["api", "ledger", "unknown"]
    api_remaining: Decimal | None = None
    api_detail: str | None = None
    ledger_remaining: Decimal | None = None
    bought: Decimal = ZERO
    cost: Decimal = ZERO
    error: str | None = None

    def credit(self) -> ProviderCredit:
        return ProviderCredit(provider=self.provider, remaining=self.remaining, source=self.source)


class WalletReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    wallet_id: str | None
    usdc: Decimal | None
    balances: tuple[TokenBalance, ...] = ()
    error: str | None = None


class Evaluation(BaseModel):
    model_config = ConfigDict(frozen=True)

    wallet: WalletReport
    credits: tuple[CreditReport, ...]
    decisions: tuple[Decision, ...]
    spend: Spend
    breaker: Breaker


class ExecutionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    intent_id: str
    outcome: Outcome
    message: str
    provider_tx_id: str | None = None
    amount: Decimal | None = None
    provider: str | None = None
    destination: str | None = None


class ReconcileItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    message: str
    intent_id: str | None = None
    provider_tx_id: str | None = None


class ReconcileReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    checked: int
    resolved: tuple[ReconcileItem, ...]
    pending: tuple[ReconcileItem, ...]
    differences: tuple[ReconcileItem, ...]
    ledger_balanced: bool


def _new_http() -> httpx.Client:
    import httpx

    return httpx.Client(timeout=httpx.Timeout(20.0, connect=5.0), follow_redirects=False)


class LazyClient:
    """Stands in for an `httpx.Client` and builds the real one on first use (a request, or any other attribute)."""

    def __init__(self, make: Callable[[], httpx.Client]) -> None:
        self._make = make
        self._client: httpx.Client | None = None

    @property
    def built(self) -> bool:
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class TreasuryService:
    def __init__(
        self,
        db: Database,
        config: TreasuryConfig,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[str], str],
        circle: CircleClient | None = None,
        openrouter: OpenRouterClient | None = None,
        recorded_costs: Mapping[str, Decimal] | None = None,
        openrouter_api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_attempts: int = 5,
        poll_interval: float = 2.0,
        transfer_attempts: int = 4,
        unknown_grace: timedelta = UNKNOWN_GRACE,
    ) -> None:
        self.db = db
        self.store = TreasuryStore(db)
        self.config = config
        self.policy = config.policy
        self._clock = clock
        self._new_id = new_id
        self.circle = circle
        self.openrouter = openrouter
        self.recorded_costs = dict(recorded_costs or {})
        self._openrouter_api_key = openrouter_api_key
        self._sleep = sleep
        self.poll_attempts = max(1, poll_attempts)
        self.poll_interval = poll_interval
        self.transfer_attempts = max(1, transfer_attempts)
        self.unknown_grace = unknown_grace
        self._owned_http: LazyClient | None = None

    @classmethod
    def open(
        cls,
        db: Database,
        env: Mapping[str, str],
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[str], str],
        http: httpx.Client | None = None,
        recorded_costs: Mapping[str, Decimal] | None = None,
        openrouter_api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_attempts: int = 5,
        poll_interval: float = 2.0,
        transfer_attempts: int = 4,
        unknown_grace: timedelta = UNKNOWN_GRACE,
    ) -> TreasuryService:
        """Read the configuration (policy file next to the database unless named) and build the clients."""
        config = load_treasury_config(env, Path(db.path))
        owned = None
        if http is None:
            # Made on the first request only: an httpx.Client loads the TLS trust store when built (most of a cold
            # `treasury_status`, which calls out only when a Circle or OpenRouter key is set).
            owned = LazyClient(_new_http)
            http = cast("httpx.Client", owned)
        circle = None
        if config.circle_api_key is not None:
            from butler_skill.adapters.circle import CircleClient

            circle = CircleClient(
                http, api_key=config.circle_api_key.get_secret_value(),
                entity_secret=config.circle_entity_secret.get_secret_value() if config.circle_entity_secret else None,
                base_url=config.circle_base_url, sleep=sleep)
        openrouter = None
        if config.openrouter_management_key is not None or openrouter_api_key:  # else there is nothing to ask
            from butler_skill.adapters.openrouter import OpenRouterClient

            openrouter = OpenRouterClient(http, base_url=config.openrouter_base_url, sleep=sleep)
        service = cls(db, config, clock=clock, new_id=new_id, circle=circle, openrouter=openrouter,
                      recorded_costs=recorded_costs, openrouter_api_key=openrouter_api_key, sleep=sleep,
                      poll_attempts=poll_attempts, poll_interval=poll_interval,
                      transfer_attempts=transfer_attempts, unknown_grace=unknown_grace)
        service._owned_http = owned
        return service

    def close(self) -> None:
        if self._owned_http is not None:
            self._owned_http.close()
            self._owned_http = None

    def __enter__(self) -> TreasuryService:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def now(self) -> datetime:
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return moment

    # ---- looking -----------------------------------------------------------------------------------
    def wallet(self) -> WalletReport:
        wallet_id = self.config.circle_wallet_id
        if self.circle is None or not wallet_id:
            missing = "CIRCLE_API_KEY" if self.circle is None else "CIRCLE_WALLET_ID"
            return WalletReport(wallet_id=wallet_id, usdc=None, error=f"{missing} is not set")
        try:
            balances = self.circle.wallet_balances(wallet_id)
        except ProviderError as exc:
            return WalletReport(wallet_id=wallet_id, usdc=None, error=exc.message)
        usdc = sum((b.amount for b in balances if self._is_payment_token(b)), ZERO)
        return WalletReport(wallet_id=wallet_id, usdc=usdc, balances=tuple(balances))

    def _is_payment_token(self, balance: TokenBalance) -> bool:
        token = self.config.token
        if token.token_id:
            return balance.token_id == token.token_id
        if balance.symbol.upper() != "USDC" or balance.is_native:
            return False
        if token.blockchain and balance.blockchain != token.blockchain:
            return False
        return not (token.token_address and balance.token_address
                    and not same_address(token.token_address, balance.token_address))

    def credits(self, *, live: bool = True) -> list[CreditReport]:
        """Remaining prepaid credit per provider named in the policy: from the provider's API where it has
        one, else derived from the ledger (opening credit + top-ups recorded - cost recorded). With
        `live=False` no provider is asked."""
        bought = self.store.bought_by_provider()
        reports: list[CreditReport] = []
        for name, pp in sorted(self.policy.providers.items()):
            cost = Decimal(str(self.recorded_costs.get(name, ZERO)))
            ledger = rules.derived_credit(pp.opening_credit, bought.get(name, ZERO), cost)
            api, detail, error = self._api_credit(name) if live else (None, None, None)
            if api is not None:
                remaining, source = api, "api"
            elif ledger is not None:
                remaining, source = ledger, "ledger"
            else:
                remaining, source = None, "unknown"
            reports.append(CreditReport(provider=name, remaining=remaining, source=source,  # type: ignore[arg-type]
                                        api_remaining=api, api_detail=detail, ledger_remaining=ledger,
                                        bought=bought.get(name, ZERO), cost=cost, error=error))
        return reports

    def _api_credit(self, provider: str) -> tuple[Decimal | None, str | None, str | None]:
        if provider != "openrouter" or self.openrouter is None:
            return None, None, None
        management = self.config.openrouter_management_key
        try:
            if management is not None:
                c = self.openrouter.credits(management.get_secret_value())
                return c.remaining, (f"GET /credits: total_credits {decimal_str(c.total_credits)}, "
                                     f"total_usage {decimal_str(c.total_usage)}"), None
            if self._openrouter_api_key:
                k = self.openrouter.key_info(self._openrouter_api_key)
                if k.limit is not None and k.limit_remaining is not None:
                    return k.limit_remaining, (f"GET /key: limit {decimal_str(k.limit)}, remaining "
                                               f"{decimal_str(k.limit_remaining)}, reset {k.limit_reset}"), None
                return None, "GET /key: the key has no limit", None
        except ProviderError as exc:
            return None, None, exc.message
        return None, None, None

    def spend(self) -> Spend:
        now = self.now()
        return rules.spend_windows([i.facts() for i in self.store.intents_that_count(now)], now)

    def evaluate(self) -> Evaluation:
        """What the policy would do now. Reads Circle and the providers; writes nothing."""
        wallet, credits = self.wallet(), self.credits()
        now = self.now()
        intents = [i.facts() for i in self.store.intents_that_count(now)]
        breaker = self.store.breaker()
        decisions = rules.decide(self.policy, self._situation(wallet, credits, intents, breaker), now)
        return Evaluation(wallet=wallet, credits=tuple(credits), decisions=tuple(decisions),
                          spend=rules.spend_windows(intents, now), breaker=breaker)

    @staticmethod
    def _situation(wallet: WalletReport, credits: list[CreditReport], intents: list[IntentFacts],
                   breaker: Breaker) -> Situation:
        return Situation(wallet_balance=wallet.usdc, credits=tuple(c.credit() for c in credits),
                         intents=tuple(intents), breaker=breaker)

    # ---- proposing and approving -------------------------------------------------------------------
    def propose(self, actor: str = "agent") -> tuple[Evaluation, list[Intent]]:
        """Decide and store each proposal as an intent (auto-approved under `auto_approve_max`)."""
        wallet, credits = self.wallet(), self.credits()
        now = self.now()

        def decide(intents: list[IntentFacts], breaker: Breaker) -> list[Decision]:
            return rules.decide(self.policy, self._situation(wallet, credits, intents, breaker), now)

        def make(decision: Decision) -> NewIntent:
            if decision.amount is None or decision.destination is None:
                raise ValueError("a proposal without an amount or a destination")
            return NewIntent(id=self._new_id("topup"), idempotency_key=str(uuid.uuid4()),
                             provider=decision.provider, destination=decision.destination,
                             amount=decision.amount, reason=decision.reason, auto_approved=decision.auto_approve)

        decisions, created = self.store.propose(decide, make, now, actor)
        for intent in created:
            log.info("intent %s proposed: %s USDC to %s (%s)", intent.id, decimal_str(intent.amount),
                     intent.provider, intent.state.value)
        intents = [i.facts() for i in self.store.intents_that_count(now)]
        evaluation = Evaluation(wallet=wallet, credits=tuple(credits), decisions=tuple(decisions),
                                spend=rules.spend_windows(intents, now), breaker=self.store.breaker())
        return evaluation, created

    def approve(self, intent_id: str, actor: str) -> Intent:
        """A person's approval. The agent-facing tool never calls this."""
        intent = self.store.intent(intent_id)
        if intent.state is IntentState.APPROVED:
            return intent
        if intent.state is not IntentState.PROPOSED:
            raise Conflict(f"intent {intent_id} is {intent.state.value}; only a proposed intent can be approved",
                           intent_id=intent_id, state=intent.state.value)
        why = rules.approval_denial(self.policy, intent.facts())
        if why is not None:
            raise PolicyDenied(f"intent {intent_id} cannot be approved: {why}", intent_id=intent_id)
        approved = self.store.approve(intent_id, actor, self.now())
        log.info("intent %s approved by %s", intent_id, actor)
        return approved

    def reject(self, intent_id: str, actor: str) -> Intent:
        return self.store.reject(intent_id, actor, self.now())

    def reset_breaker(self, actor: str) -> Breaker:
        breaker = self.store.reset_breaker(actor, self.now())
        log.info("treasury breaker reset by %s", actor)
        return breaker

    # ---- executing ---------------------------------------------------------------------------------
    def execute(self, intent_id: str, *, dry_run: bool = True, actor: str = "agent") -> ExecutionResult:
        intent = self.store.intent(intent_id)
        if intent.state is IntentState.COMPLETE:
            return self._result(intent, "complete", "already complete; nothing sent")
        if intent.state is IntentState.PROPOSED:
            raise ApprovalRequired(
                f"intent {intent_id} needs a person's approval: butler treasury approve {intent_id}",
                intent_id=intent_id, amount=decimal_str(intent.amount), provider=intent.provider)
        if intent.state in (IntentState.REJECTED, IntentState.FAILED):
            raise Conflict(f"intent {intent_id} is {intent.state.value}; propose a new one", intent_id=intent_id)
        if intent.state in (IntentState.SENDING, IntentState.UNKNOWN, IntentState.FAILED_SAFE):
            raise Conflict(f"the outcome of intent {intent_id} is not known; run `butler treasury reconcile` "
                           "(it is never paid a second time)", intent_id=intent_id, state=intent.state.value)
        if intent.state is IntentState.SUBMITTED:
            if dry_run:
                return self._result(intent, "submitted", "sent earlier; waiting for Circle's final state")
            return self._poll(intent.id, actor)

        # APPROVED
        if not dry_run:
            self._circle(transfers=True)
        wallet = self.wallet()
        body = self._transfer_body(intent)

        def authorize(current: Intent, others: list[IntentFacts], breaker: Breaker) -> str | None:
            return rules.execution_denial(self.policy, current.facts(), auto_approved=current.auto_approved,
                                          others=others, wallet_balance=wallet.usdc, breaker=breaker,
                                          now=self.now())

        if dry_run:
            others = [i.facts() for i in self.store.intents_that_count(self.now(), exclude=intent.id)]
            why = authorize(intent, others, self.store.breaker())
            if why is not None:
                return self._result(intent, "denied", why)
            return self._result(intent, "would_execute",
                                f"would send {decimal_str(intent.amount)} USDC to {intent.provider}'s top-up address")

        from butler_skill.adapters.circle import CircleRejected, TransferAttemptsExhausted

        circle = self._circle(transfers=True)
        circle.public_key()  # fetched (and cached) before the claim: a failure here has sent nothing
        claimed = self.store.claim(intent.id, self.now(), actor, authorize, body)
        stored_body = claimed.request or body
        log.info("intent %s sending %s USDC (key reused on every attempt)", intent.id, decimal_str(intent.amount))
        try:
            ack = circle.send_transfer(stored_body, attempts=self.transfer_attempts,
                                       on_attempt=lambda n: self.store.count_attempt(intent.id, self.now()))
        except CircleRejected as exc:
            failed = self.store.mark(intent.id, IntentState.FAILED, self.now(), actor, "Circle refused the transfer",
                                     failure=exc.message, max_failures=self.policy.max_consecutive_failures)
            return self._result(failed, "failed", exc.message)
        except TransferAttemptsExhausted as exc:
            if exc.maybe_received:
                unknown = self.store.mark(intent.id, IntentState.UNKNOWN, self.now(), actor,
                                          "no definite answer; reconcile before anything else", failure=exc.message)
                return self._result(unknown, "unknown", f"{exc.message}; run `butler treasury reconcile`")
            back = self.store.mark(intent.id, IntentState.APPROVED, self.now(), actor,
                                   "never reached Circle; may be executed again with the same key",
                                   failure=exc.message, max_failures=self.policy.max_consecutive_failures)
            return self._result(back, "not_sent", exc.message)
        except Conflict as exc:
            unknown = self.store.mark(intent.id, IntentState.UNKNOWN, self.now(), actor,
                                      "Circle reported an idempotency conflict", failure=exc.message)
            return self._result(unknown, "unknown", exc.message)
        except BaseException:
            # Whatever happened, the request may be out: the intent stays unresolved for reconciliation.
            self.store.mark(intent.id, IntentState.UNKNOWN, self.now(), actor, "interrupted while sending")
            raise
        self.store.mark(intent.id, IntentState.SUBMITTED, self.now(), actor, "Circle accepted the transfer",
                        provider_tx_id=ack.id, provider_state=ack.state)
        return self._poll(intent.id, actor)

    def execute_approved(self, *, dry_run: bool = True, actor: str = "agent") -> list[ExecutionResult]:
        """Every approved intent (oldest first) and every one Circle has accepted but not finished."""
        ready = self.store.intents(states=(IntentState.APPROVED, IntentState.SUBMITTED))
        results: list[ExecutionResult] = []
        for intent in sorted(ready, key=lambda i: (i.created_at, i.id)):
            try:
                results.append(self.execute(intent.id, dry_run=dry_run, actor=actor))
            except PolicyDenied as exc:
                results.append(self._result(intent, "denied", exc.message))
        return results

    def _transfer_body(self, intent: Intent) -> dict[str, object]:
        if intent.request is not None:
            return intent.request
        wallet_id = self.config.circle_wallet_id
        if not wallet_id:
            raise ConfigError("CIRCLE_WALLET_ID is not set")
        token = self.config.token
        from butler_skill.adapters.circle import transfer_body

        return transfer_body(idempotency_key=intent.idempotency_key, wallet_id=wallet_id,
                             destination_address=intent.destination, amount=decimal_str(intent.amount),
                             ref_id=intent.id, fee_level=token.fee_level, token_id=token.token_id,
                             blockchain=token.blockchain, token_address=token.token_address)

    def _circle(self, *, transfers: bool = False) -> CircleClient:
        if self.circle is None:
            raise ConfigError("CIRCLE_API_KEY is not set")
        if transfers and self.config.circle_entity_secret is None:
            raise ConfigError("CIRCLE_ENTITY_SECRET is not set: transfers need it")
        return self.circle

    def _poll(self, intent_id: str, actor: str) -> ExecutionResult:
        intent = self.store.intent(intent_id)
        if intent.provider_tx_id is None:
            raise Conflict(f"intent {intent_id} has no Circle transaction to follow", intent_id=intent_id)
        circle = self._circle()
        last: CircleTransaction | None = None
        for attempt in range(self.poll_attempts):
            try:
                last = circle.get_transaction(intent.provider_tx_id)
            except ProviderError as exc:
                log.info("polling %s: %s", intent_id, exc.message)
            if last is not None and last.final:
                return self._settle(intent, last, actor)
            if attempt + 1 < self.poll_attempts:
                self._sleep(self.poll_interval)
        if last is not None and last.state != intent.provider_state:
            intent = self.store.mark(intent_id, IntentState.SUBMITTED, self.now(), actor, "still in progress",
                                     provider_state=last.state)
        return self._result(intent, "submitted",
                            f"Circle reports {last.state if last else 'nothing yet'}; check again with "
                            f"`butler treasury execute {intent_id}` or reconcile")

    def _settle(self, intent: Intent, tx: CircleTransaction, actor: str) -> ExecutionResult:
        """Record Circle's final answer for an intent (once)."""
        mismatch = self._mismatch(intent, tx)
        if mismatch is not None:
            if intent.state is not IntentState.UNKNOWN:
                intent = self.store.mark(intent.id, IntentState.UNKNOWN, self.now(), actor, mismatch,
                                         failure=mismatch)
            return self._result(intent, "unknown", mismatch)
        if tx.state == "COMPLETE":
            wallet_id = str((intent.request or {}).get("walletId") or self.config.circle_wallet_id or "unknown")
            postings = rules.transfer_postings(
                wallet_id=wallet_id, provider=intent.provider, amount=intent.amount, fee=tx.network_fee,
                fee_currency=f"{tx.blockchain}:native" if tx.blockchain else None)
            self.store.settle_complete(intent.id, provider_tx_id=tx.id, provider_state=tx.state, postings=postings,
                                       now=self.now(), actor=actor, max_failures=self.policy.max_consecutive_failures)
            log.info("intent %s complete (Circle transaction %s)", intent.id, tx.id)
            return self._result(self.store.intent(intent.id), "complete",
                                f"sent {decimal_str(intent.amount)} USDC to {intent.provider}")
        failed = self.store.mark(intent.id, IntentState.FAILED, self.now(), actor, f"Circle reported {tx.state}",
                                 provider_tx_id=tx.id, provider_state=tx.state,
                                 failure=tx.error_reason or tx.state,
                                 max_failures=self.policy.max_consecutive_failures)
        log.info("intent %s failed at Circle: %s", intent.id, tx.state)
        return self._result(failed, "failed", f"Circle reported {tx.state}"
                            + (f" ({tx.error_reason})" if tx.error_reason else ""))

    @staticmethod
    def _mismatch(intent: Intent, tx: CircleTransaction) -> str | None:
        if tx.ref_id is not None and tx.ref_id != intent.id:
            return f"Circle transaction {tx.id} carries refId {tx.ref_id!r}, not {intent.id!r}"
        if tx.amount is not None and tx.amount != intent.amount:
            return (f"Circle transaction {tx.id} moved {decimal_str(tx.amount)}, the intent "
                    f"{decimal_str(intent.amount)}")
        if tx.destination_address and not same_address(tx.destination_address, intent.destination):
            return f"Circle transaction {tx.id} went to another destination than the intent's"
        return None

    @staticmethod
    def _result(intent: Intent, outcome: Outcome, message: str) -> ExecutionResult:
        return ExecutionResult(intent_id=intent.id, outcome=outcome, message=message,
                               provider_tx_id=intent.provider_tx_id, amount=intent.amount,
                               provider=intent.provider, destination=intent.destination)

    # ---- reconciling -------------------------------------------------------------------------------
    def reconcile(self, actor: str = "reconcile") -> ReconcileReport:
        """Compare the ledger with Circle and the providers, resolve unknown outcomes, report every difference.
        It never sends a transfer."""
        circle = self._circle()
        resolved: list[ReconcileItem] = []
        pending: list[ReconcileItem] = []
        differences: list[ReconcileItem] = []
        checked = 0

        for intent in sorted(self.store.intents(states=rules.UNRESOLVED_STATES), key=lambda i: (i.created_at, i.id)):
            checked += 1
            try:
                tx = self._find(circle, intent)
            except Conflict as exc:
                differences.append(ReconcileItem(kind="ambiguous_ref", message=exc.message, intent_id=intent.id))
                continue
            except ProviderError as exc:
                pending.append(ReconcileItem(kind="circle_unavailable", intent_id=intent.id,
                                             message=f"could not ask Circle: {exc.message}"))
                continue
            if tx is None:
                bucket, item = self._not_found(intent, actor)
                {"resolved": resolved, "pending": pending, "differences": differences}[bucket].append(item)
                continue
            if not tx.final:
                if intent.state is not IntentState.SUBMITTED or intent.provider_tx_id != tx.id:
                    self.store.mark(intent.id, IntentState.SUBMITTED, self.now(), actor, "found at Circle, in progress",
                                    provider_tx_id=tx.id, provider_state=tx.state)
                pending.append(ReconcileItem(kind="in_progress", intent_id=intent.id, provider_tx_id=tx.id,
                                             message=f"Circle reports {tx.state}"))
                continue
            result = self._settle(intent, tx, actor)
            item = ReconcileItem(kind=f"resolved_{result.outcome}", intent_id=intent.id, provider_tx_id=tx.id,
                                 message=result.message)
            (differences if result.outcome == "unknown" else resolved).append(item)

        checked += self._recheck_settled(circle, differences)
        self._unknown_transfers(circle, differences)
        balanced = self._check_ledger(differences)
        self._check_credit(differences)
        return ReconcileReport(checked=checked, resolved=tuple(resolved), pending=tuple(pending),
                               differences=tuple(differences), ledger_balanced=balanced)

    def _find(self, circle: CircleClient, intent: Intent) -> CircleTransaction | None:
        from butler_skill.adapters.circle import CircleRejected

        if intent.provider_tx_id:
            try:
                return circle.get_transaction(intent.provider_tx_id)
            except CircleRejected as exc:
                if exc.status != 404:
                    raise
                return None
        wallet_id = str((intent.request or {}).get("walletId") or self.config.circle_wallet_id or "") or None
        found = circle.list_transactions(ref_id=intent.id, wallet_id=wallet_id)
        if len(found) > 1:
            raise Conflict(f"{len(found)} Circle transactions carry refId {intent.id}; resolve by hand",
                           intent_id=intent.id)
        return found[0] if found else None

    def _not_found(self, intent: Intent, actor: str) -> tuple[str, ReconcileItem]:
        """Circle has no transfer for this intent. Returns where the finding goes and what it says."""
        if intent.state is IntentState.FAILED_SAFE:
            return "pending", ReconcileItem(kind="still_not_found", intent_id=intent.id,
                                            message="still no transfer at Circle; stays failed-safe, not re-paid")
        if intent.state is IntentState.SUBMITTED:
            return "differences", ReconcileItem(
                kind="transaction_missing", intent_id=intent.id, provider_tx_id=intent.provider_tx_id,
                message="Circle accepted this transfer earlier but no longer finds its transaction id")
        sent_at = intent.sent_at or intent.updated_at
        if self.now() - sent_at < self.unknown_grace:
            return "pending", ReconcileItem(kind="too_recent", intent_id=intent.id,
                                            message="not listed at Circle yet; too recent to judge, ask again later")
        self.store.mark(intent.id, IntentState.FAILED_SAFE, self.now(), actor,
                        "no transfer with this refId at Circle; never re-paid automatically",
                        failure="not found at Circle", max_failures=self.policy.max_consecutive_failures)
        return "resolved", ReconcileItem(kind="resolved_failed_safe", intent_id=intent.id,
                                         message="no transfer found at Circle: marked failed-safe; propose again "
                                                 "to retry")

    def _recheck_settled(self, circle: CircleClient, differences: list[ReconcileItem]) -> int:
        checked = 0
        settled = self.store.intents(states=(IntentState.COMPLETE, IntentState.FAILED), limit=RECONCILE_RECHECK)
        for intent in settled:
            if not intent.provider_tx_id:
                continue
            checked += 1
            try:
                tx = circle.get_transaction(intent.provider_tx_id)
            except ProviderError as exc:
                differences.append(ReconcileItem(kind="circle_unavailable", intent_id=intent.id,
                                                 provider_tx_id=intent.provider_tx_id, message=exc.message))
                continue
            ours = "COMPLETE" if intent.state is IntentState.COMPLETE else "FAILED"
            theirs = "COMPLETE" if tx.state == "COMPLETE" else ("FAILED" if tx.final else "PENDING")
            if ours != theirs:
                differences.append(ReconcileItem(
                    kind="state_mismatch", intent_id=intent.id, provider_tx_id=tx.id,
                    message=f"ledger says {intent.state.value}, Circle says {tx.state}"))
            mismatch = self._mismatch(intent, tx)
            if mismatch:
                differences.append(ReconcileItem(kind="terms_mismatch", intent_id=intent.id,
                                                 provider_tx_id=tx.id, message=mismatch))
        return checked

    def _unknown_transfers(self, circle: CircleClient, differences: list[ReconcileItem]) -> None:
        wallet_id = self.config.circle_wallet_id
        if not wallet_id:
            return
        known_tx = {i.provider_tx_id for i in self.store.intents() if i.provider_tx_id}
        known_ref = {i.id for i in self.store.intents()}
        try:
            listed = circle.list_transactions(wallet_id=wallet_id)
        except ProviderError as exc:
            differences.append(ReconcileItem(kind="circle_unavailable", message=exc.message))
            return
        for tx in listed:
            if tx.transaction_type not in (None, "OUTBOUND") or tx.id in known_tx:
                continue
            if tx.ref_id in known_ref:
                continue  # found by refId above, or recorded now
            differences.append(ReconcileItem(
                kind="unrecorded_transfer", provider_tx_id=tx.id,
                message=f"the wallet sent {decimal_str(tx.amount or ZERO)} ({tx.state}) without a Butler intent"))

    def _check_ledger(self, differences: list[ReconcileItem]) -> bool:
        entries = self.store.entries()
        by_posting: dict[str, list[rules.EntryDraft]] = {}
        for e in entries:
            by_posting.setdefault(e.posting_id, []).append(
                rules.EntryDraft(account=e.account, currency=e.currency, amount=e.amount))
        balanced = True
        for posting_id, drafts in sorted(by_posting.items()):
            off = rules.imbalance(drafts)
            if off:
                balanced = False
                differences.append(ReconcileItem(kind="unbalanced_posting", message=f"posting {posting_id} is off "
                                                 + ", ".join(f"{decimal_str(v)} {c}" for c, v in off.items())))
        posted = {e.intent_id for e in entries}
        for intent in self.store.intents():
            has_transfer = "transfer" in self.store.postings_of(intent.id) if intent.id in posted else False
            if intent.state is IntentState.COMPLETE and not has_transfer:
                differences.append(ReconcileItem(kind="missing_posting", intent_id=intent.id,
                                                 message="complete but no transfer posting in the ledger"))
            if intent.state is not IntentState.COMPLETE and intent.id in posted:
                differences.append(ReconcileItem(kind="stray_posting", intent_id=intent.id,
                                                 message=f"{intent.state.value} but the ledger holds entries for it"))
        return balanced

    def _check_credit(self, differences: list[ReconcileItem]) -> None:
        for report in self.credits():
            if report.error:
                differences.append(ReconcileItem(kind="credit_unavailable",
                                                 message=f"{report.provider}: {report.error}"))
            if report.api_remaining is None or report.ledger_remaining is None:
                continue
            gap = report.api_remaining - report.ledger_remaining
            if abs(gap) > self.policy.credit_tolerance:
                differences.append(ReconcileItem(
                    kind="credit_mismatch",
                    message=f"{report.provider}: provider reports {decimal_str(report.api_remaining)} USD left, "
                            f"the ledger derives {decimal_str(report.ledger_remaining)} (gap {decimal_str(gap)})"))

    # ---- status ------------------------------------------------------------------------------------
    def recent(self, limit: int) -> list[Intent]:
        return self.store.intents(limit=limit) if limit > 0 else []
