"""Treasury rules: when to top up, how much, to whom, and whether a payment may leave the wallet.

Pure: no I/O, no clock, no environment. Balances, credit, what was spent, the breaker and the time are
passed in; decisions, denials and ledger postings come out. Money is `Decimal`, never float.

Deny by default: a provider the policy does not name, a destination it does not list, a cap it does not
set (a missing cap is zero) or a credit figure nobody could read all refuse the payment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from butler_skill.core.days import utc_day, utc_month

ZERO = Decimal("0")
USDC_QUANTUM = Decimal("0.000001")  # USDC has 6 decimals: an amount finer than this cannot be sent
USDC = "USDC"
DEFAULT_THRESHOLD = Decimal("50")  # the original Butler's AUTO_BUY_THRESHOLD
DEFAULT_AMOUNT = Decimal("200")  # the original Butler's AUTO_BUY_AMOUNT
DEFAULT_MAX_FAILURES = 3

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def decimal_str(amount: Decimal) -> str:
    """A plain decimal string (`"12.5"`, `"200"`), never exponent notation: the wire and JSON form."""
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def same_address(a: str, b: str) -> bool:
    """EVM addresses are case-insensitive (checksum casing is cosmetic); other chains compare exactly."""
    if a.startswith("0x") and b.startswith("0x"):
        return a.lower() == b.lower()
    return a == b


# ---- policy ----------------------------------------------------------------------------------------
class Caps(BaseModel):
    """Spend caps in USDC. A cap not given is zero: nothing may be spent until a person sets it."""

    model_config = _FROZEN

    per_transaction: Decimal = Field(default=ZERO, ge=0)
    daily: Decimal = Field(default=ZERO, ge=0)
    monthly: Decimal = Field(default=ZERO, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Caps:
        if not self.per_transaction <= self.daily <= self.monthly:
            raise ValueError(
                "caps must satisfy per_transaction <= daily <= monthly "
                f"(got {decimal_str(self.per_transaction)}, {decimal_str(self.daily)}, "
                f"{decimal_str(self.monthly)})"
            )
        return self


class ProviderPolicy(BaseModel):
    """One paid provider account: where its top-ups may go, and optional overrides."""

    model_config = _FROZEN

    destinations: tuple[str, ...] = Field(
        default=(), description="Allowlisted top-up addresses; the first is where proposals pay."
    )
    threshold: Decimal | None = Field(default=None, ge=0, description="Top up below this credit (USD).")
    amount: Decimal | None = Field(default=None, gt=0, description="How much one top-up sends (USDC).")
    opening_credit: Decimal | None = Field(
        default=None,
        description="Credit (USD) the account held before Butler recorded anything; enables ledger-derived "
        "credit for providers without a credit API.",
    )

    @field_validator("destinations")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not address or address != address.strip() or any(c.isspace() for c in address):
                raise ValueError("a destination address must be a non-empty string without spaces")
        return value


class TreasuryPolicy(BaseModel):
    model_config = _FROZEN

    enabled: bool = False
    threshold: Decimal = Field(default=DEFAULT_THRESHOLD, ge=0)
    amount: Decimal = Field(default=DEFAULT_AMOUNT, gt=0)
    caps: Caps = Field(default_factory=Caps)
    min_wallet_reserve: Decimal = Field(default=ZERO, ge=0)
    auto_approve_max: Decimal = Field(default=ZERO, ge=0)
    max_consecutive_failures: int = Field(default=DEFAULT_MAX_FAILURES, ge=1, le=100)
    providers: dict[str, ProviderPolicy] = Field(default_factory=dict)
    credit_tolerance: Decimal = Field(default=Decimal("1"), ge=0)

    def provider(self, name: str) -> ProviderPolicy | None:
        return self.providers.get(name)

    def threshold_for(self, name: str) -> Decimal:
        p = self.providers.get(name)
        return p.threshold if p is not None and p.threshold is not None else self.threshold

    def amount_for(self, name: str) -> Decimal:
        p = self.providers.get(name)
        return p.amount if p is not None and p.amount is not None else self.amount

    def destination_allowed(self, provider: str, address: str) -> bool:
        p = self.providers.get(provider)
        return p is not None and any(same_address(address, allowed) for allowed in p.destinations)

    def auto_approves(self, amount: Decimal) -> bool:
        return self.auto_approve_max > 0 and ZERO < amount <= self.auto_approve_max


# ---- intents ---------------------------------------------------------------------------------------
class IntentState(StrEnum):
    PROPOSED = "proposed"  # stored, waiting for a person (or the policy) to approve
    APPROVED = "approved"  # may be executed
    REJECTED = "rejected"  # a person said no; final
    SENDING = "sending"  # claimed for execution; the transfer request may be on the wire
    SUBMITTED = "submitted"  # Circle accepted it and gave a transaction id; not final yet
    UNKNOWN = "unknown"  # we cannot tell whether Circle received it: only reconciliation resolves this
    COMPLETE = "complete"  # Circle reported COMPLETE; recorded in the ledger once
    FAILED = "failed"  # definitely not paid (Circle said FAILED/CANCELLED/DENIED, or refused the request)
    FAILED_SAFE = "failed_safe"  # reconciliation found no transfer; never re-paid automatically


OPEN_STATES = frozenset({IntentState.PROPOSED, IntentState.APPROVED, IntentState.SENDING,
                         IntentState.SUBMITTED, IntentState.UNKNOWN})
# Money that left, or may have left: counted against the caps in the window it was sent.
SENT_STATES = frozenset({IntentState.SENDING, IntentState.SUBMITTED, IntentState.UNKNOWN,
                         IntentState.COMPLETE, IntentState.FAILED_SAFE})
IN_FLIGHT_STATES = frozenset({IntentState.SENDING, IntentState.SUBMITTED, IntentState.UNKNOWN})
PENDING_STATES = frozenset({IntentState.PROPOSED, IntentState.APPROVED})
UNRESOLVED_STATES = frozenset({IntentState.SENDING, IntentState.SUBMITTED, IntentState.UNKNOWN,
                               IntentState.FAILED_SAFE})

TRANSITIONS: Mapping[IntentState, frozenset[IntentState]] = {
    IntentState.PROPOSED: frozenset({IntentState.APPROVED, IntentState.REJECTED}),
    IntentState.APPROVED: frozenset({IntentState.SENDING, IntentState.REJECTED}),
    # SENDING -> APPROVED only when every attempt provably never reached Circle (refused connection, 429).
    IntentState.SENDING: frozenset({IntentState.SUBMITTED, IntentState.UNKNOWN, IntentState.COMPLETE,
                                    IntentState.FAILED, IntentState.FAILED_SAFE, IntentState.APPROVED}),
    # -> UNKNOWN when Circle's transaction does not match the intent's terms: a person must look.
    IntentState.SUBMITTED: frozenset({IntentState.COMPLETE, IntentState.FAILED, IntentState.UNKNOWN}),
    IntentState.UNKNOWN: frozenset({IntentState.SUBMITTED, IntentState.COMPLETE, IntentState.FAILED,
                                    IntentState.FAILED_SAFE}),
    # A transfer reconciliation could not find may still surface later: record it then, never pay again.
    IntentState.FAILED_SAFE: frozenset({IntentState.SUBMITTED, IntentState.COMPLETE, IntentState.FAILED,
                                        IntentState.UNKNOWN}),
    IntentState.REJECTED: frozenset(),
    IntentState.COMPLETE: frozenset(),
    IntentState.FAILED: frozenset(),
}


def can_transition(current: IntentState, target: IntentState) -> bool:
    return target in TRANSITIONS[current]


class IntentFacts(BaseModel):
    """What the rules need to know about one stored intent."""

    model_config = _FROZEN

    id: str
    provider: str
    amount: Decimal
    destination: str
    state: IntentState
    sent_at: datetime | None = None


class Spend(BaseModel):
    """Money counted against the caps, for the UTC day and month of `at`."""

    model_config = _FROZEN

    day: str
    month: str
    sent_day: Decimal = ZERO
    sent_month: Decimal = ZERO
    in_flight: Decimal = ZERO  # sent but not known to be final: may not show in the wallet balance yet
    pending: Decimal = ZERO  # proposed or approved, not sent


def spend_windows(intents: Iterable[IntentFacts], at: datetime, *, exclude: str | None = None) -> Spend:
    day, month = utc_day(at), utc_month(at)
    sent_day = sent_month = in_flight = pending = ZERO
    for intent in intents:
        if intent.id == exclude:
            continue
        if intent.state in PENDING_STATES:
            pending += intent.amount
        if intent.state in IN_FLIGHT_STATES:
            in_flight += intent.amount
        if intent.state in SENT_STATES and intent.sent_at is not None and utc_month(intent.sent_at) == month:
            sent_month += intent.amount
            if utc_day(intent.sent_at) == day:
                sent_day += intent.amount
    return Spend(day=day, month=month, sent_day=sent_day, sent_month=sent_month, in_flight=in_flight,
                 pending=pending)


def caps_left(policy: TreasuryPolicy, spend: Spend) -> tuple[Decimal, Decimal]:
    """What may still be sent in the current UTC day and month (never negative)."""
    return max(policy.caps.daily - spend.sent_day, ZERO), max(policy.caps.monthly - spend.sent_month, ZERO)


# ---- breaker ---------------------------------------------------------------------------------------
class Breaker(BaseModel):
    """Consecutive failed payments. Once tripped it stays tripped until a person resets it."""

    model_config = _FROZEN

    consecutive_failures: int = Field(default=0, ge=0)
    tripped_at: datetime | None = None

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None


def breaker_after(breaker: Breaker, outcome: Literal["success", "failure"], at: datetime,
                  max_failures: int) -> Breaker:
    if outcome == "success":
        # A success discovered later (reconciliation) clears the count but never un-trips: only a person does.
        return breaker.model_copy(update={"consecutive_failures": 0})
    failures = breaker.consecutive_failures + 1
    tripped_at = breaker.tripped_at or (at if failures >= max_failures else None)
    return Breaker(consecutive_failures=failures, tripped_at=tripped_at)


# ---- decisions -------------------------------------------------------------------------------------
class ProviderCredit(BaseModel):
    """A provider account's remaining prepaid credit (USD), or None when nobody could tell."""

    model_config = _FROZEN

    provider: str
    remaining: Decimal | None
    source: Literal["api", "ledger", "unknown"] = "unknown"


class Decision(BaseModel):
    model_config = _FROZEN

    provider: str
    action: Literal["none", "propose", "deny"]
    reason: str
    amount: Decimal | None = None
    destination: str | None = None
    auto_approve: bool = False


class Situation(BaseModel):
    """Everything `decide` looks at, gathered by the caller."""

    model_config = _FROZEN

    wallet_balance: Decimal | None  # USDC; None when the wallet could not be read
    credits: tuple[ProviderCredit, ...]
    intents: tuple[IntentFacts, ...] = ()
    breaker: Breaker = Field(default_factory=Breaker)


def payment_denial(
    policy: TreasuryPolicy,
    *,
    provider: str,
    amount: Decimal,
    destination: str,
    wallet_balance: Decimal | None,
    committed_day: Decimal,
    committed_month: Decimal,
    committed_unsettled: Decimal,
    breaker: Breaker,
) -> str | None:
    """Why this payment may not leave, or None when every rule allows it.

    `committed_*` is what already counts against the day and month windows; `committed_unsettled` is
    money promised or in flight that the wallet balance may not show yet (kept aside for the reserve).
    """
    if not policy.enabled:
        return "treasury automation is disabled by policy (enabled: false)"
    if breaker.tripped:
        return (f"the breaker is open after {breaker.consecutive_failures} consecutive failures; "
                "a person must reset it (butler treasury reset-breaker)")
    if policy.provider(provider) is None:
        return f"provider {provider!r} is not named in the policy"
    if not policy.destination_allowed(provider, destination):
        return f"destination is not on the allowlist for {provider!r}"
    if amount <= ZERO:
        return "amount must be positive"
    if amount != amount.quantize(USDC_QUANTUM):
        return "amount has more than 6 decimal places (USDC's precision)"
    if amount > policy.caps.per_transaction:
        return (f"amount {decimal_str(amount)} exceeds the per-transaction cap "
                f"{decimal_str(policy.caps.per_transaction)}")
    if committed_day + amount > policy.caps.daily:
        return (f"daily cap {decimal_str(policy.caps.daily)} would be exceeded "
                f"({decimal_str(committed_day)} already committed today, UTC)")
    if committed_month + amount > policy.caps.monthly:
        return (f"monthly cap {decimal_str(policy.caps.monthly)} would be exceeded "
                f"({decimal_str(committed_month)} already committed this month, UTC)")
    if wallet_balance is None:
        return "the wallet balance is unknown"
    left = wallet_balance - committed_unsettled - amount
    if left < policy.min_wallet_reserve:
        return (f"the wallet would fall below its reserve of {decimal_str(policy.min_wallet_reserve)} USDC "
                f"(balance {decimal_str(wallet_balance)}, unsettled {decimal_str(committed_unsettled)})")
    return None


def decide(policy: TreasuryPolicy, situation: Situation, now: datetime) -> list[Decision]:
    """One decision per provider (sorted by name): nothing to do, a proposed top-up, or a denial.

    Proposals made earlier in the same call count against the caps and the wallet of later ones.
    """
    spend = spend_windows(situation.intents, now)
    extra = ZERO  # what earlier proposals of this call commit
    credit_by = {c.provider: c for c in situation.credits}
    open_by: dict[str, str] = {}
    for intent in situation.intents:
        if intent.state in OPEN_STATES:
            open_by.setdefault(intent.provider, intent.id)
    decisions: list[Decision] = []
    for provider in sorted(set(credit_by) | set(policy.providers)):
        if policy.provider(provider) is None:
            decisions.append(Decision(provider=provider, action="deny",
                                      reason=f"provider {provider!r} is not named in the policy"))
            continue
        if provider in open_by:
            decisions.append(Decision(provider=provider, action="none",
                                      reason=f"intent {open_by[provider]} for {provider!r} is still open"))
            continue
        credit = credit_by.get(provider)
        threshold = policy.threshold_for(provider)
        if credit is None or credit.remaining is None:
            decisions.append(Decision(provider=provider, action="deny",
                                      reason=f"the remaining credit of {provider!r} is unknown"))
            continue
        if credit.remaining >= threshold:
            decisions.append(Decision(
                provider=provider, action="none",
                reason=f"credit {decimal_str(credit.remaining)} is at or above the threshold "
                       f"{decimal_str(threshold)}"))
            continue
        amount = policy.amount_for(provider)
        destinations = policy.providers[provider].destinations
        destination = destinations[0] if destinations else ""
        why = payment_denial(
            policy, provider=provider, amount=amount, destination=destination,
            wallet_balance=situation.wallet_balance,
            committed_day=spend.sent_day + spend.pending + extra,
            committed_month=spend.sent_month + spend.pending + extra,
            committed_unsettled=spend.in_flight + spend.pending + extra,
            breaker=situation.breaker,
        )
        if why is not None:
            decisions.append(Decision(provider=provider, action="deny", reason=why, amount=amount,
                                      destination=destination or None))
            continue
        extra += amount
        decisions.append(Decision(
            provider=provider, action="propose", amount=amount, destination=destination,
            auto_approve=policy.auto_approves(amount),
            reason=f"credit {decimal_str(credit.remaining)} is below the threshold {decimal_str(threshold)}",
        ))
    return decisions


def execution_denial(policy: TreasuryPolicy, intent: IntentFacts, *, auto_approved: bool,
                     others: Sequence[IntentFacts], wallet_balance: Decimal | None, breaker: Breaker,
                     now: datetime) -> str | None:
    """Why an approved intent may not be sent now (None: send it). Checked again at the moment of sending,
    against money actually sent in the current windows: the policy may have changed since approval."""
    if intent.state is not IntentState.APPROVED:
        return f"intent is {intent.state.value}, not approved"
    if auto_approved and not policy.auto_approves(intent.amount):
        return "the intent was approved by policy, but its amount is now above auto_approve_max"
    spend = spend_windows(others, now, exclude=intent.id)
    return payment_denial(
        policy, provider=intent.provider, amount=intent.amount, destination=intent.destination,
        wallet_balance=wallet_balance, committed_day=spend.sent_day, committed_month=spend.sent_month,
        committed_unsettled=spend.in_flight, breaker=breaker,
    )


def approval_denial(policy: TreasuryPolicy, intent: IntentFacts) -> str | None:
    """Why a person may not approve this intent as it stands (the rest is checked again when it is sent)."""
    if intent.state is not IntentState.PROPOSED:
        return f"intent is {intent.state.value}, not proposed"
    if policy.provider(intent.provider) is None:
        return f"provider {intent.provider!r} is not named in the policy"
    if not policy.destination_allowed(intent.provider, intent.destination):
        return f"destination is not on the allowlist for {intent.provider!r}"
    if intent.amount > policy.caps.per_transaction:
        return (f"amount {decimal_str(intent.amount)} exceeds the per-transaction cap "
                f"{decimal_str(policy.caps.per_transaction)}")
    return None


# ---- double-entry postings -------------------------------------------------------------------------
class EntryDraft(BaseModel):
    """One leg of a posting. Debits are positive, credits negative; a posting sums to zero per currency."""

    model_config = _FROZEN

    account: str
    currency: str
    amount: Decimal


class PostingDraft(BaseModel):
    model_config = _FROZEN

    kind: Literal["transfer", "fee"]
    entries: tuple[EntryDraft, ...]


def wallet_account(wallet_id: str) -> str:
    return f"wallet:{wallet_id}"


def provider_account(provider: str) -> str:
    return f"provider:{provider}"


FEE_ACCOUNT = "expense:network-fees"


def transfer_postings(*, wallet_id: str, provider: str, amount: Decimal, fee: Decimal | None = None,
                      fee_currency: str | None = None) -> list[PostingDraft]:
    """A completed top-up: USDC leaves the wallet into the provider's prepaid credit (1 USDC = 1 USD of
    credit), and the network fee, if any, leaves the wallet in the chain's native token."""
    if amount <= ZERO:
        raise ValueError("a transfer posting needs a positive amount")
    postings = [PostingDraft(kind="transfer", entries=(
        EntryDraft(account=provider_account(provider), currency=USDC, amount=amount),
        EntryDraft(account=wallet_account(wallet_id), currency=USDC, amount=-amount),
    ))]
    if fee is not None and fee > ZERO:
        currency = fee_currency or "NATIVE"
        postings.append(PostingDraft(kind="fee", entries=(
            EntryDraft(account=FEE_ACCOUNT, currency=currency, amount=fee),
            EntryDraft(account=wallet_account(wallet_id), currency=currency, amount=-fee),
        )))
    for posting in postings:
        if imbalance(posting.entries):
            raise ValueError("posting does not balance")  # unreachable by construction; kept as a guard
    return postings


def imbalance(entries: Iterable[EntryDraft]) -> dict[str, Decimal]:
    """Per currency, how far a set of entries is from summing to zero (empty when balanced)."""
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for entry in entries:
        totals[entry.currency] += entry.amount
    return {currency: total for currency, total in totals.items() if total != ZERO}


def account_balances(entries: Iterable[EntryDraft]) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for entry in entries:
        totals[(entry.account, entry.currency)] += entry.amount
    return dict(totals)


def derived_credit(opening: Decimal | None, bought: Decimal, cost: Decimal) -> Decimal | None:
    """Ledger-derived remaining credit: what the account held, plus top-ups recorded, minus cost recorded."""
    if opening is None:
        return None
    return opening + bought - cost
