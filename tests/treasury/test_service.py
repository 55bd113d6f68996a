"""The two-phase flow end to end against the loopback fakes: propose, approve, execute, record, reconcile."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from butler_skill.core.treasury import IntentState
from butler_skill.errors import ApprovalRequired, ConfigError, Conflict, PolicyDenied
from butler_skill.store.treasury import Intent
from butler_skill.treasury.service import TreasuryService
from tests.treasury.conftest import (
    ACME_DEST,
    OR_DEST,
    WALLET_ID,
    Harness,
    ledger_is_balanced,
    transfer_bodies,
)

PERSON = "person:ada"


def proposed(service: TreasuryService) -> Intent:
    _, created = service.propose()
    assert len(created) == 1, created
    return created[0]


def approved(h: Harness, service: TreasuryService) -> Intent:
    h.set_credit("20")
    intent = proposed(service)
    return service.approve(intent.id, PERSON)


def test_full_flow_records_balanced_entries_once(harness: Harness) -> None:
    s = harness.service()
    (d,) = s.evaluate().decisions
    assert d.action == "none"  # 74.5 USD left, threshold 50
    harness.set_credit("20")
    intent = proposed(s)
    assert intent.state is IntentState.PROPOSED and intent.amount == Decimal("200") and intent.destination == OR_DEST
    assert harness.circle.transfer_posts() == []  # the intent is stored before any call that moves money
    s.approve(intent.id, PERSON)
    result = s.execute(intent.id, dry_run=False, actor=PERSON)
    assert result.outcome == "complete"

    (sent,) = transfer_bodies(harness.circle)
    assert sent["idempotencyKey"] == intent.idempotency_key and sent["refId"] == intent.id
    assert sent["amounts"] == ["200"] and sent["walletId"] == WALLET_ID and sent["destinationAddress"] == OR_DEST
    assert sent["tokenId"] == "usdc-token-0001" and sent["feeLevel"] == "MEDIUM"

    done = s.store.intent(intent.id)
    assert done.state is IntentState.COMPLETE and done.provider_tx_id == result.provider_tx_id
    entries = s.store.entries(intent.id)
    assert len(entries) == 4 and ledger_is_balanced(s)
    assert {e.idempotency_key for e in entries} == {intent.idempotency_key}
    assert {e.provider_tx_id for e in entries} == {result.provider_tx_id}
    assert s.store.bought_by_provider() == {"openrouter": Decimal("200")}
    assert harness.circle.usdc == Decimal("800")

    # executing again, or reconciling, records nothing more and pays nothing more
    assert s.execute(intent.id, dry_run=False).outcome == "complete"
    report = s.reconcile()
    assert report.differences == () and report.ledger_balanced
    assert len(s.store.entries()) == 4 and harness.circle.transfer_count == 1
    assert [e.to_state for e in s.store.events(intent.id)] == ["proposed", "approved", "sending", "submitted",
                                                               "complete"]


def test_the_agent_cannot_skip_approval(harness: Harness) -> None:
    s = harness.service()
    harness.set_credit("20")
    intent = proposed(s)
    with pytest.raises(ApprovalRequired):
        s.execute(intent.id, dry_run=False)
    assert s.execute_approved(dry_run=False) == []
    assert harness.circle.transfer_posts() == []


def test_dry_run_calls_nothing_that_moves_money(harness: Harness) -> None:
    s = harness.service()
    intent = approved(harness, s)
    result = s.execute(intent.id, dry_run=True)
    assert result.outcome == "would_execute"
    assert [r.outcome for r in s.execute_approved(dry_run=True)] == ["would_execute"]
    assert harness.circle.transfer_posts() == [] and harness.circle.requests_to("GET", "publicKey") == []
    assert s.store.intent(intent.id).state is IntentState.APPROVED


def test_auto_approval_under_the_max(harness: Harness) -> None:
    harness.set_policy(auto_approve_max="200")
    s = harness.service()
    harness.set_credit("10")
    intent = proposed(s)
    assert intent.state is IntentState.APPROVED and intent.auto_approved and intent.approved_by == "policy"
    (result,) = s.execute_approved(dry_run=False)
    assert result.outcome == "complete" and harness.circle.transfer_count == 1
    # lowering the max afterwards stops a policy-approved intent that was not sent yet
    harness.set_credit("10")
    harness.set_policy(auto_approve_max="200", caps={"per_transaction": "250", "daily": "1000", "monthly": "2000"})
    intent2 = proposed(harness.service())
    harness.set_policy(auto_approve_max="100", caps={"per_transaction": "250", "daily": "1000", "monthly": "2000"})
    with pytest.raises(PolicyDenied, match="auto_approve_max"):
        harness.service().execute(intent2.id, dry_run=False)
    assert harness.circle.transfer_count == 1


def test_caps_hold_per_utc_day_and_reopen_the_next_day(harness: Harness) -> None:
    harness.set_policy(auto_approve_max="200", caps={"per_transaction": "200", "daily": "400", "monthly": "1000"},
                       min_wallet_reserve="0")
    harness.circle.usdc = Decimal("5000")
    outcomes = []
    for _ in range(3):
        s = harness.service()
        harness.set_credit("10")
        evaluation, created = s.propose()
        outcomes.append(evaluation.decisions[0].action)
        for intent in created:
            assert s.execute(intent.id, dry_run=False).outcome == "complete"
    assert outcomes == ["propose", "propose", "deny"]
    assert harness.circle.transfer_count == 2
    harness.clock.now = harness.clock.now.replace(hour=23, minute=59)
    assert harness.service().propose()[0].decisions[0].action == "deny"
    harness.clock.advance(minutes=2)  # 00:01 UTC: a new day
    _, created = harness.service().propose()
    assert len(created) == 1


def test_reserve_is_kept(harness: Harness) -> None:
    harness.circle.usdc = Decimal("299.99")
    s = harness.service()
    harness.set_credit("20")
    (d,) = s.propose()[0].decisions
    assert d.action == "deny" and "reserve" in d.reason


def test_execution_rechecks_the_policy(harness: Harness) -> None:
    s = harness.service()
    intent = approved(harness, s)
    harness.set_policy(providers={"openrouter": {"destinations": [ACME_DEST]}})
    with pytest.raises(PolicyDenied, match="allowlist"):
        harness.service().execute(intent.id, dry_run=False)
    harness.set_policy(enabled=False)
    with pytest.raises(PolicyDenied, match="disabled"):
        harness.service().execute(intent.id, dry_run=False)
    harness.circle.usdc = Decimal("250")
    harness.set_policy()
    with pytest.raises(PolicyDenied, match="reserve"):
        harness.service().execute(intent.id, dry_run=False)
    assert harness.circle.transfer_posts() == []
    assert harness.service().store.intent(intent.id).state is IntentState.APPROVED


def test_approval_checks_allowlist_and_per_transaction_cap(harness: Harness) -> None:
    s = harness.service()
    harness.set_credit("20")
    intent = proposed(s)
    harness.set_policy(caps={"per_transaction": "100", "daily": "500", "monthly": "1000"})
    with pytest.raises(PolicyDenied, match="per-transaction"):
        harness.service().approve(intent.id, PERSON)
    harness.service().reject(intent.id, PERSON)
    with pytest.raises(Conflict):
        harness.service().approve(intent.id, PERSON)


def test_failures_trip_the_breaker_until_a_person_resets_it(harness: Harness) -> None:
    harness.set_policy(caps={"per_transaction": "250", "daily": "5000", "monthly": "10000"}, min_wallet_reserve="0")
    harness.circle.final_state_for[OR_DEST.lower()] = "FAILED"
    for n in range(3):
        s = harness.service()
        intent = approved(harness, s)
        result = s.execute(intent.id, dry_run=False, actor=PERSON)
        assert result.outcome == "failed"
        assert s.store.breaker().consecutive_failures == n + 1
    s = harness.service()
    assert s.store.breaker().tripped
    harness.set_credit("20")
    evaluation, created = s.propose()
    assert created == [] and "breaker" in evaluation.decisions[0].reason
    # failed intents record nothing in the ledger and count nothing against the caps
    assert s.store.entries() == [] and s.spend().sent_day == 0
    s.reset_breaker(PERSON)
    harness.circle.final_state_for.clear()
    intent = approved(harness, s)
    assert s.execute(intent.id, dry_run=False).outcome == "complete"
    assert harness.circle.transfer_count == 4 and ledger_is_balanced(s)


def test_unknown_outcome_is_never_paid_twice_and_reconcile_records_it_once(harness: Harness) -> None:
    s = harness.service(transfer_attempts=2)
    intent = approved(harness, s)
    harness.circle.fault_transfer("drop", when="after")
    harness.circle.fault_transfer("drop", when="after")
    result = s.execute(intent.id, dry_run=False)
    assert result.outcome == "unknown"
    assert s.store.intent(intent.id).state is IntentState.UNKNOWN
    with pytest.raises(Conflict, match="reconcile"):
        s.execute(intent.id, dry_run=False)
    # the policy does not propose a second top-up while one is unresolved
    (d,) = s.propose()[0].decisions
    assert d.action == "none" and intent.id in d.reason
    report = s.reconcile()
    assert [i.kind for i in report.resolved] == ["resolved_complete"]
    assert s.store.intent(intent.id).state is IntentState.COMPLETE
    s.reconcile()
    assert harness.circle.transfer_count == 1 and len(s.store.entries(intent.id)) == 4 and ledger_is_balanced(s)


def test_not_found_becomes_failed_safe_after_grace_and_is_not_repaid(harness: Harness) -> None:
    s = harness.service(transfer_attempts=2)
    intent = approved(harness, s)
    harness.circle.fault_transfer("drop", when="before")
    harness.circle.fault_transfer("drop", when="before")
    assert s.execute(intent.id, dry_run=False).outcome == "unknown"
    report = s.reconcile()
    assert [p.kind for p in report.pending] == ["too_recent"]
    harness.clock.advance(minutes=3)
    report = s.reconcile()
    assert [r.kind for r in report.resolved] == ["resolved_failed_safe"]
    assert s.store.intent(intent.id).state is IntentState.FAILED_SAFE
    assert s.store.breaker().consecutive_failures == 1
    with pytest.raises(Conflict):
        s.execute(intent.id, dry_run=False)
    assert harness.circle.transfer_count == 0
    # a person may propose again: a new intent with a new key
    again = proposed(s)
    assert again.idempotency_key != intent.idempotency_key


def test_not_sent_goes_back_to_approved_with_the_same_key(harness: Harness) -> None:
    s = harness.service(transfer_attempts=2)
    intent = approved(harness, s)
    for _ in range(2):
        harness.circle.fault_transfer("status", status=429, retry_after="0")
    result = s.execute(intent.id, dry_run=False)
    assert result.outcome == "not_sent" and s.store.intent(intent.id).state is IntentState.APPROVED
    assert s.execute(intent.id, dry_run=False).outcome == "complete"
    keys = {b["idempotencyKey"] for b in transfer_bodies(harness.circle)}
    assert keys == {intent.idempotency_key} and harness.circle.transfer_count == 1


def test_idempotency_conflict_leaves_the_outcome_unknown(harness: Harness) -> None:
    s = harness.service()
    intent = approved(harness, s)
    harness.circle.idempotency[intent.idempotency_key] = ("another body", None)  # type: ignore[assignment]
    assert s.execute(intent.id, dry_run=False).outcome == "unknown"


def test_submitted_then_polled_later(harness: Harness) -> None:
    harness.circle.polls_to_final = 5
    s = harness.service(poll_attempts=2)
    intent = approved(harness, s)
    first = s.execute(intent.id, dry_run=False)
    assert first.outcome == "submitted" and s.store.intent(intent.id).provider_state == "SENT"
    assert harness.sleeps == [0.0]
    assert s.execute(intent.id, dry_run=False).outcome == "submitted"
    assert s.execute(intent.id, dry_run=False).outcome == "complete"
    assert harness.circle.transfer_count == 1 and ledger_is_balanced(s)


FAULTS: dict[str, list[tuple[str, dict[str, object]]]] = {
    "none": [],
    "429 then ok": [("status", {"status": 429, "retry_after": "0"})],
    "500 before": [("status", {"status": 500})],
    "503 after": [("status", {"status": 503, "when": "after"})],
    "drop before": [("drop", {})],
    "drop after": [("drop", {"when": "after"})],
    "timeout after": [("delay", {"when": "after", "seconds": 2.0})],
    "lost twice": [("drop", {"when": "after"}), ("status", {"status": 502})],
    "every attempt lost": [("drop", {"when": "after"})] * 3,
    "every attempt 429": [("status", {"status": 429, "retry_after": "0"})] * 3,
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_approved_intent_pays_at_most_once(harness: Harness, name: str) -> None:
    s = harness.service(transfer_attempts=3, read_timeout=0.5)
    intent = approved(harness, s)
    for kind, kw in FAULTS[name]:
        harness.circle.fault_transfer(kind, **kw)
    s.execute(intent.id, dry_run=False)
    harness.clock.advance(minutes=5)
    s.reconcile()
    state = s.store.intent(intent.id).state
    paid = harness.circle.transfers_for(intent.id)
    assert len(paid) <= 1
    assert ledger_is_balanced(s)
    assert (state is IntentState.COMPLETE) == (len(paid) == 1)
    assert len(s.store.entries(intent.id)) == (4 if paid else 0)
    assert {b["idempotencyKey"] for b in transfer_bodies(harness.circle)} <= {intent.idempotency_key}
    assert state in (IntentState.COMPLETE, IntentState.FAILED_SAFE, IntentState.APPROVED)


def test_reconcile_reports_differences(harness: Harness) -> None:
    harness.set_policy(providers={"openrouter": {"destinations": [OR_DEST], "opening_credit": "500"}},
                       credit_tolerance="1")
    s = harness.service()
    intent = approved(harness, s)
    assert s.execute(intent.id, dry_run=False).outcome == "complete"
    harness.circle.add_external_transfer(Decimal("42"), "0x3333333333333333333333333333333333333333")
    harness.circle.transfers[s.store.intent(intent.id).provider_tx_id or ""].state = "FAILED"  # Circle changed its mind
    report = s.reconcile()
    kinds = sorted(d.kind for d in report.differences)
    assert kinds == ["credit_mismatch", "state_mismatch", "unrecorded_transfer"]
    # ledger credit: 500 opening + 200 bought - 0 cost = 700; OpenRouter says 20
    (mismatch,) = [d for d in report.differences if d.kind == "credit_mismatch"]
    assert "700" in mismatch.message and "20" in mismatch.message


def test_ledger_derived_credit_for_providers_without_an_api(harness: Harness) -> None:
    harness.set_policy(providers={"openrouter": {"destinations": [OR_DEST]},
                                  "acme": {"destinations": [ACME_DEST], "opening_credit": "100"}},
                       auto_approve_max="200", caps={"per_transaction": "250", "daily": "1000", "monthly": "2000"})
    harness.costs["acme"] = Decimal("60.5")
    s = harness.service()
    credits = {c.provider: c for c in s.credits()}
    assert credits["acme"].remaining == Decimal("39.5") and credits["acme"].source == "ledger"
    assert credits["openrouter"].source == "api" and credits["openrouter"].remaining == Decimal("74.5")
    _, created = s.propose()
    assert [i.provider for i in created] == ["acme"]
    assert s.execute(created[0].id, dry_run=False).outcome == "complete"
    assert {c.provider: c.remaining for c in harness.service().credits()}["acme"] == Decimal("239.5")


def test_append_only_is_enforced_by_sqlite(harness: Harness) -> None:
    s = harness.service()
    intent = approved(harness, s)
    s.execute(intent.id, dry_run=False)
    conn = sqlite3.connect(harness.folder / "state.db")
    for sql in ("UPDATE treasury_entries SET amount = '0'", "DELETE FROM treasury_entries",
                "UPDATE treasury_postings SET provider_tx_id = 'x'", "DELETE FROM treasury_postings",
                "DELETE FROM treasury_intent_events", "DELETE FROM treasury_intents",
                "UPDATE treasury_intents SET amount = '1'", "UPDATE treasury_intents SET idempotency_key = 'k'",
                "UPDATE treasury_intents SET destination = '0x0'"):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(sql)
    conn.close()
    assert len(s.store.entries()) == 4


def test_missing_configuration_is_a_config_error(harness: Harness) -> None:
    s = harness.service(env={k: v for k, v in harness.env().items() if k != "CIRCLE_ENTITY_SECRET"})
    intent = approved(harness, s)
    with pytest.raises(ConfigError, match="CIRCLE_ENTITY_SECRET"):
        s.execute(intent.id, dry_run=False)
    assert s.store.intent(intent.id).state is IntentState.APPROVED
    s2 = harness.service(env={"HOME": "/nonexistent"})
    assert s2.wallet().usdc is None and s2.config.network == "unknown"
    with pytest.raises(ConfigError):
        s2.reconcile()


def test_counts_under_faults(harness: Harness) -> None:
    """Many intents, each under a different fault: transfers made never exceed intents approved."""
    harness.set_policy(auto_approve_max="10", amount="10", caps={"per_transaction": "10", "daily": "1000",
                                                                 "monthly": "1000"}, min_wallet_reserve="0")
    approved_ids = []
    for name, faults in FAULTS.items():
        s = harness.service(transfer_attempts=3, read_timeout=0.5)
        harness.set_credit("1")
        _, created = s.propose()
        assert len(created) == 1, name
        approved_ids.append(created[0].id)
        for kind, kw in faults:
            harness.circle.fault_transfer(kind, **kw)
        s.execute(created[0].id, dry_run=False)
        harness.clock.advance(minutes=5)
        s.reconcile()
        harness.clock.advance(minutes=1)
        s.reset_breaker(PERSON)
    s = harness.service()
    complete = s.store.intents(states=(IntentState.COMPLETE,))
    not_sent = s.store.intents(states=(IntentState.APPROVED,))
    assert harness.circle.transfer_count == len(complete) <= len(approved_ids)
    assert all(len(harness.circle.transfers_for(i)) <= 1 for i in approved_ids)
    assert len(complete) + len(not_sent) + len(s.store.intents(states=(IntentState.FAILED_SAFE,))) == len(FAULTS)
    assert ledger_is_balanced(s) and len(s.store.entries()) == 4 * len(complete)
    print(f"\nintents approved {len(approved_ids)}, transfers made {harness.circle.transfer_count}, "
          f"complete {len(complete)}, never sent {len(not_sent)}")


def test_concurrent_executions_of_one_intent_pay_once(harness: Harness) -> None:
    """Threads (each its own SQLite connection) race to send: the claim is one BEGIN IMMEDIATE transaction."""
    import threading

    harness.set_policy(providers={"openrouter": {"destinations": [OR_DEST]}, "acme": {"destinations": [ACME_DEST],
                                                                                    "opening_credit": "0"}},
                       caps={"per_transaction": "250", "daily": "250", "monthly": "1000"}, min_wallet_reserve="0")
    s = harness.service()
    harness.set_credit("20")
    _, created = s.propose()
    assert [i.provider for i in created] == ["acme"]  # the daily cap leaves room for one proposal at a time
    first = s.approve(created[0].id, PERSON)
    outcomes: list[str] = []
    lock = threading.Lock()

    def race(intent_id: str) -> None:
        service = harness.service()
        try:
            result = service.execute(intent_id, dry_run=False).outcome
        except (Conflict, PolicyDenied) as exc:
            result = exc.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=race, args=(first.id,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("complete") >= 1 and harness.circle.transfer_count == 1
    assert len(harness.circle.transfer_posts()) == 1  # the losers never reached Circle
    assert ledger_is_balanced(s) and len(s.store.entries()) == 4


def test_a_transaction_circle_forgot_is_reported_not_guessed(harness: Harness) -> None:
    harness.circle.polls_to_final = 10
    s = harness.service(poll_attempts=1)
    intent = approved(harness, s)
    assert s.execute(intent.id, dry_run=False).outcome == "submitted"
    harness.circle.transfers.clear()
    harness.clock.advance(minutes=10)
    report = s.reconcile()
    assert [d.kind for d in report.differences] == ["transaction_missing"]
    assert s.store.intent(intent.id).state is IntentState.SUBMITTED
