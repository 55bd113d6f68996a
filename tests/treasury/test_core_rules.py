"""The pure treasury rules: policy validation, decisions, caps, reserve, breaker, postings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from butler_skill.core.treasury import (
    Breaker,
    Caps,
    IntentFacts,
    IntentState,
    ProviderCredit,
    ProviderPolicy,
    Situation,
    TreasuryPolicy,
    account_balances,
    approval_denial,
    breaker_after,
    decide,
    decimal_str,
    execution_denial,
    imbalance,
    spend_windows,
    transfer_postings,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
DEST = "0xAbC0000000000000000000000000000000000001"
D = Decimal


def pol(**kw: object) -> TreasuryPolicy:
    base: dict[str, object] = {
        "enabled": True, "threshold": "50", "amount": "200",
        "caps": {"per_transaction": "250", "daily": "500", "monthly": "1000"},
        "min_wallet_reserve": "100", "providers": {"openrouter": {"destinations": [DEST]}},
    }
    base.update(kw)
    return TreasuryPolicy.model_validate(base)


def situation(credit: str | None = "10", wallet: str | None = "1000", intents: tuple[IntentFacts, ...] = (),
              breaker: Breaker | None = None) -> Situation:
    return Situation(wallet_balance=D(wallet) if wallet is not None else None,
                     credits=(ProviderCredit(provider="openrouter", remaining=D(credit) if credit else None,
                                             source="api"),),
                     intents=intents, breaker=breaker or Breaker())


def sent(i: int, amount: str, at: datetime, state: IntentState = IntentState.COMPLETE) -> IntentFacts:
    return IntentFacts(id=f"t{i}", provider="openrouter", amount=D(amount), destination=DEST, state=state,
                       sent_at=at)


def test_defaults_deny_everything() -> None:
    p = TreasuryPolicy()
    assert not p.enabled and p.threshold == 50 and p.amount == 200 and p.auto_approve_max == 0
    assert p.caps == Caps() and p.providers == {}
    assert p.max_consecutive_failures == 3
    (d,) = decide(p.model_copy(update={"enabled": True}), situation(), NOW)
    assert d.action == "deny" and "not named" in d.reason


@pytest.mark.parametrize("caps", [("10", "5", "20"), ("10", "20", "15"), ("30", "20", "10")])
def test_caps_must_be_ordered(caps: tuple[str, str, str]) -> None:
    with pytest.raises(ValidationError, match="per_transaction <= daily <= monthly"):
        Caps(per_transaction=D(caps[0]), daily=D(caps[1]), monthly=D(caps[2]))


def test_decimal_str_is_plain() -> None:
    assert decimal_str(D("12.50")) == "12.5"
    assert decimal_str(D("2E+2")) == "200"
    assert decimal_str(D("0.000001")) == "0.000001"
    assert decimal_str(D("-0")) == "0"


def test_nothing_to_do_above_threshold() -> None:
    (d,) = decide(pol(), situation(credit="50"), NOW)
    assert d.action == "none"


def test_proposes_below_threshold_to_first_allowlisted_destination() -> None:
    (d,) = decide(pol(), situation(credit="49.99"), NOW)
    assert (d.action, d.amount, d.destination, d.auto_approve) == ("propose", D("200"), DEST, False)


def test_disabled_or_broken_never_proposes() -> None:
    (d,) = decide(pol(enabled=False), situation(), NOW)
    assert d.action == "deny" and "disabled" in d.reason
    tripped = Breaker(consecutive_failures=3, tripped_at=NOW)
    (d,) = decide(pol(), situation(breaker=tripped), NOW)
    assert d.action == "deny" and "breaker" in d.reason


def test_unknown_credit_or_wallet_is_denied() -> None:
    (d,) = decide(pol(), situation(credit=None), NOW)
    assert d.action == "deny" and "unknown" in d.reason
    (d,) = decide(pol(), situation(wallet=None), NOW)
    assert d.action == "deny" and "wallet balance is unknown" in d.reason


def test_open_intent_blocks_a_second_proposal() -> None:
    for state in (IntentState.PROPOSED, IntentState.APPROVED, IntentState.SENDING, IntentState.SUBMITTED,
                  IntentState.UNKNOWN):
        (d,) = decide(pol(), situation(intents=(sent(1, "200", NOW, state),)), NOW)
        assert d.action == "none" and "still open" in d.reason


def test_caps_reserve_and_per_transaction() -> None:
    (d,) = decide(pol(amount="300"), situation(), NOW)
    assert d.action == "deny" and "per-transaction" in d.reason
    (d,) = decide(pol(), situation(intents=(sent(1, "200", NOW), sent(2, "200", NOW))), NOW)
    assert d.action == "deny" and "daily cap" in d.reason
    month = (sent(1, "250", NOW - timedelta(days=3)), sent(2, "250", NOW - timedelta(days=2)),
             sent(3, "250", NOW - timedelta(days=1)), sent(4, "100", NOW - timedelta(days=1)))
    (d,) = decide(pol(), situation(intents=month), NOW)
    assert d.action == "deny" and "monthly cap" in d.reason
    (d,) = decide(pol(), situation(wallet="299.99"), NOW)
    assert d.action == "deny" and "reserve" in d.reason
    (d,) = decide(pol(), situation(wallet="300"), NOW)
    assert d.action == "propose"


def test_windows_are_utc_day_and_month() -> None:
    late = datetime(2026, 11, 23, 23, 59, tzinfo=UTC)
    s = spend_windows([sent(1, "200", late), sent(2, "100", NOW)], NOW)
    assert (s.sent_day, s.sent_month) == (D("100"), D("300"))
    # 23:30 in UTC-5 on the 24th is 04:30 UTC on the 25th: another day.
    from datetime import timezone
    other = datetime(2026, 11, 24, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert spend_windows([sent(1, "5", other)], NOW).sent_day == 0
    assert spend_windows([sent(1, "5", NOW)], datetime(2026, 12, 1, tzinfo=UTC)).sent_month == 0


def test_failed_and_rejected_do_not_count_failed_safe_does() -> None:
    intents = [sent(1, "100", NOW, IntentState.FAILED), sent(2, "100", NOW, IntentState.REJECTED),
               sent(3, "100", NOW, IntentState.FAILED_SAFE)]
    assert spend_windows(intents, NOW).sent_day == D("100")


def test_auto_approve_only_within_max() -> None:
    (d,) = decide(pol(auto_approve_max="200"), situation(), NOW)
    assert d.auto_approve
    (d,) = decide(pol(auto_approve_max="199.99"), situation(), NOW)
    assert not d.auto_approve


def test_provider_override_and_deny_unknown_provider() -> None:
    p = pol(providers={"openrouter": {"destinations": [DEST], "threshold": "5", "amount": "20"}})
    (d,) = decide(p, situation(credit="10"), NOW)
    assert d.action == "none"
    (d,) = decide(p, situation(credit="4"), NOW)
    assert d.amount == D("20")
    s = Situation(wallet_balance=D("1000"), credits=(ProviderCredit(provider="stranger", remaining=D("0")),))
    decisions = {x.provider: x for x in decide(p, s, NOW)}
    assert decisions["stranger"].action == "deny"


def test_execution_rechecks_allowlist_and_auto_approval() -> None:
    intent = IntentFacts(id="t1", provider="openrouter", amount=D("200"), destination=DEST,
                         state=IntentState.APPROVED)
    assert execution_denial(pol(), intent, auto_approved=False, others=[], wallet_balance=D("1000"),
                            breaker=Breaker(), now=NOW) is None
    moved = pol(providers={"openrouter": {"destinations": ["0x9999999999999999999999999999999999999999"]}})
    assert "allowlist" in (execution_denial(moved, intent, auto_approved=False, others=[],
                                            wallet_balance=D("1000"), breaker=Breaker(), now=NOW) or "")
    assert "auto_approve_max" in (execution_denial(pol(), intent, auto_approved=True, others=[],
                                                   wallet_balance=D("1000"), breaker=Breaker(), now=NOW) or "")
    # EVM addresses match whatever their checksum casing
    lower = intent.model_copy(update={"destination": DEST.lower()})
    assert execution_denial(pol(), lower, auto_approved=False, others=[], wallet_balance=D("1000"),
                            breaker=Breaker(), now=NOW) is None


def test_approval_denial() -> None:
    intent = IntentFacts(id="t1", provider="openrouter", amount=D("200"), destination=DEST,
                         state=IntentState.PROPOSED)
    assert approval_denial(pol(), intent) is None
    assert approval_denial(pol(caps={"per_transaction": "100", "daily": "500", "monthly": "1000"}), intent)
    assert approval_denial(pol(), intent.model_copy(update={"state": IntentState.APPROVED}))


def test_breaker_trips_after_three_and_only_a_person_resets() -> None:
    b = Breaker()
    for _ in range(2):
        b = breaker_after(b, "failure", NOW, 3)
    assert not b.tripped and b.consecutive_failures == 2
    b = breaker_after(b, "success", NOW, 3)
    assert b.consecutive_failures == 0
    for _ in range(3):
        b = breaker_after(b, "failure", NOW, 3)
    assert b.tripped
    assert breaker_after(b, "success", NOW, 3).tripped  # a late success does not re-arm it


def test_postings_balance_per_currency() -> None:
    postings = transfer_postings(wallet_id="w", provider="openrouter", amount=D("12.5"), fee=D("0.000021"),
                                 fee_currency="BASE-SEPOLIA:native")
    entries = [e for p in postings for e in p.entries]
    assert imbalance(entries) == {}
    balances = account_balances(entries)
    assert balances[("provider:openrouter", "USDC")] == D("12.5")
    assert balances[("wallet:w", "USDC")] == D("-12.5")
    assert balances[("wallet:w", "BASE-SEPOLIA:native")] == D("-0.000021")
    assert [p.kind for p in transfer_postings(wallet_id="w", provider="x", amount=D("1"))] == ["transfer"]


# ---- properties ------------------------------------------------------------------------------------
NAMES = ["openrouter", "acme", "zeta"]
money = st.decimals(min_value=0, max_value=2000, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn) -> TreasuryPolicy:
    a, b, c = sorted(draw(st.lists(money, min_size=3, max_size=3)))
    return TreasuryPolicy(
        enabled=draw(st.booleans()), threshold=draw(money), amount=draw(money.filter(lambda x: x > 0)),
        caps=Caps(per_transaction=a, daily=b, monthly=c), min_wallet_reserve=draw(money),
        auto_approve_max=draw(money),
        providers={name: ProviderPolicy(destinations=(f"0x{i:040x}",))
                   for i, name in enumerate(draw(st.sets(st.sampled_from(NAMES), max_size=3)))},
    )


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    providers = draw(st.sets(st.sampled_from(["openrouter", "acme", "zeta", "stranger"]), max_size=4))
    credits = tuple(ProviderCredit(provider=p, remaining=draw(st.none() | money)) for p in sorted(providers))
    intents = tuple(
        IntentFacts(id=f"i{n}", provider=draw(st.sampled_from(["openrouter", "acme", "zeta"])), amount=draw(money),
                    destination="0x" + "0" * 40, state=draw(st.sampled_from(list(IntentState))),
                    sent_at=NOW - timedelta(hours=draw(st.integers(0, 24 * 40))))
        for n in range(draw(st.integers(0, 6)))
    )
    tripped = draw(st.booleans())
    return Situation(wallet_balance=draw(st.none() | money), credits=credits, intents=intents,
                     breaker=Breaker(consecutive_failures=3 if tripped else 0, tripped_at=NOW if tripped else None))


@settings(max_examples=300, deadline=None)
@given(policies(), situations())
def test_no_decision_breaks_the_policy(p: TreasuryPolicy, s: Situation) -> None:
    decisions = decide(p, s, NOW)
    proposals = [d for d in decisions if d.action == "propose"]
    if not p.enabled or s.breaker.tripped:
        assert proposals == []
    spend = spend_windows(s.intents, NOW)
    total = sum((d.amount for d in proposals if d.amount is not None), Decimal(0))
    assert spend.sent_day + spend.pending + total <= p.caps.daily or not proposals
    assert spend.sent_month + spend.pending + total <= p.caps.monthly or not proposals
    if proposals:
        assert s.wallet_balance is not None
        assert s.wallet_balance - spend.in_flight - spend.pending - total >= p.min_wallet_reserve
    for d in proposals:
        assert d.amount is not None and d.destination is not None
        assert 0 < d.amount <= p.caps.per_transaction
        assert p.destination_allowed(d.provider, d.destination)
        assert d.auto_approve == (p.auto_approve_max > 0 and d.amount <= p.auto_approve_max)
        credit = next(c for c in s.credits if c.provider == d.provider)
        assert credit.remaining is not None and credit.remaining < p.threshold_for(d.provider)
    assert len({d.provider for d in decisions}) == len(decisions)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(money, st.integers(0, 24 * 90)), max_size=12))
def test_spend_windows_partition_by_utc_day(items: list[tuple[Decimal, int]]) -> None:
    intents = [sent(n, str(a), NOW - timedelta(hours=h)) for n, (a, h) in enumerate(items)]
    s = spend_windows(intents, NOW)
    assert s.sent_day == sum((i.amount for i in intents if i.sent_at and i.sent_at.date() == NOW.date()), Decimal(0))
    assert s.sent_day <= s.sent_month
