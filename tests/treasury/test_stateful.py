"""Stateful property test: any sequence of evaluations, proposals, approvals, rejections, executions, faults,
reconciliations, breaker resets and passing days, against the loopback Circle and OpenRouter fakes.

After every step: no cap is exceeded in any UTC day or month, the wallet never goes below its reserve, no
destination off the allowlist was paid, each intent paid at most once (transfers counted on the fake
server), the ledger balances and matches Circle; nothing was proposed while disabled or broken; a dry run
sent nothing and stored nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from butler_skill.core.days import utc_day, utc_month
from butler_skill.core.treasury import UNRESOLVED_STATES, EntryDraft, IntentState, TreasuryPolicy, imbalance
from butler_skill.errors import ButlerError
from butler_skill.handlers.treasury import TreasuryAutobuyInput, run_autobuy
from butler_skill.store.db import Database
from butler_skill.treasury.service import TreasuryService
from tests.conftest import Clock, Ids
from tests.servers.fake_circle import start_fake_circle
from tests.servers.fake_openrouter import start_fake_openrouter
from tests.treasury.conftest import (
    ACME_DEST,
    CIRCLE_API_KEY,
    ENTITY_SECRET,
    MANAGEMENT_KEY,
    OR_DEST,
    START,
    TOKEN_ID,
    WALLET_ID,
    http_client,
    make_env,
)

AMOUNTS = ["10", "25", "50", "100", "200"]
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": 500}), ("status", {"status": 503, "when": "after"}),
    ("status", {"status": 429, "retry_after": "0"}), ("status", {"status": 400}),
    ("drop", {}), ("drop", {"when": "after"}),
]


@st.composite
def policy_data(draw: st.DrawFn) -> dict[str, Any]:
    # Mostly policies that allow something (so money moves and the caps bind), sometimes ones that allow nothing.
    amount = Decimal(draw(st.sampled_from(AMOUNTS)))
    per_tx = amount + Decimal(draw(st.sampled_from(["0", "0", "50", "-5"])))
    per_tx = max(per_tx, Decimal(0))
    daily = per_tx + Decimal(draw(st.sampled_from(["0", "50", "200", "500"])))
    monthly = daily + Decimal(draw(st.sampled_from(["0", "100", "1000"])))
    return {
        "enabled": draw(st.sampled_from([True, True, True, True, False])),
        "threshold": draw(st.sampled_from(["20", "50", "50"])),
        "amount": str(amount),
        "caps": {"per_transaction": str(per_tx), "daily": str(daily), "monthly": str(monthly)},
        "min_wallet_reserve": draw(st.sampled_from(["0", "50", "200"])),
        "auto_approve_max": draw(st.sampled_from(["0", "25", "100", "200", "200"])),
        "providers": {"openrouter": {"destinations": [OR_DEST]},
                      "acme": {"destinations": [ACME_DEST], "opening_credit": "100",
                               "amount": draw(st.sampled_from(AMOUNTS))}},
        "circle": {"token_id": TOKEN_ID},
    }


class TreasuryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="butler-treasury-"))
        self.circle = start_fake_circle(api_key=CIRCLE_API_KEY, entity_secret=ENTITY_SECRET, wallet_id=WALLET_ID,
                                        token_id=TOKEN_ID)
        self.openrouter = start_fake_openrouter(management_key=MANAGEMENT_KEY)
        self.clock = Clock(START)
        self.ids = Ids()
        self.http = http_client()
        self.db = Database(self.folder / "state.db")
        self.costs: dict[str, Decimal] = {}
        self.policy = TreasuryPolicy()
        self.start_balance = Decimal("0")
        self._service: TreasuryService | None = None

    @initialize(data=policy_data(), balance=st.sampled_from(["0", "300", "1000", "5000", "5000"]),
                credit=st.sampled_from(["5", "5", "30", "80"]))
    def setup(self, data: dict[str, Any], balance: str, credit: str) -> None:
        self.openrouter.total_usage = self.openrouter.total_credits - Decimal(credit)
        (self.folder / "treasury-policy.yaml").write_text(json.dumps(data), "utf-8")
        self.policy = TreasuryPolicy.model_validate({k: v for k, v in data.items() if k != "circle"})
        self.circle.usdc = self.start_balance = Decimal(balance)

    def teardown(self) -> None:
        event(f"transfers made: {min(len(self.circle.transfers), 3)}{'+' if len(self.circle.transfers) >= 3 else ''}")
        self.http.close()
        self.db.close()
        self.circle.close()
        self.openrouter.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers --
    def svc(self) -> TreasuryService:
        if self._service is None:  # rebuilt when its inputs (recorded costs) change
            self._service = TreasuryService.open(
                self.db, make_env(self.circle, self.openrouter), clock=self.clock, new_id=self.ids, http=self.http,
                sleep=lambda s: None, recorded_costs=self.costs, transfer_attempts=2, poll_attempts=2,
                poll_interval=0.0)
        return self._service

    def snapshot(self) -> tuple[int, list[tuple[str, str]]]:
        intents = self.svc().store.intents()
        return len(self.circle.transfer_posts()), sorted((i.id, i.state.value) for i in intents)

    def has(self, *states: IntentState) -> bool:
        return bool(self.svc().store.intents(states=states or None))

    def pick(self, data: st.DataObject, *states: IntentState) -> str:
        intents = self.svc().store.intents(states=states or None)
        return data.draw(st.sampled_from(sorted(i.id for i in intents)))

    # -- rules --
    @rule(hours=st.sampled_from([1, 6, 24, 24 * 31]))
    def time_passes(self, hours: int) -> None:
        self.clock.advance(hours=hours)

    @rule(provider=st.sampled_from(["openrouter", "acme"]), left=st.sampled_from(["0", "5", "30", "80"]))
    def credit_changes(self, provider: str, left: str) -> None:
        if provider == "openrouter":
            self.openrouter.total_usage = self.openrouter.total_credits - Decimal(left)
        else:  # ledger-derived: opening 100 + bought - cost
            bought = self.svc().store.bought_by_provider().get("acme", Decimal(0))
            self.costs["acme"] = Decimal(100) + bought - Decimal(left)
            self._service = None

    @rule(mode=st.sampled_from(["evaluate", "propose", "propose", "execute", "execute"]),
          dry_run=st.sampled_from([False, False, True]))
    def agent_autobuy(self, mode: str, dry_run: bool) -> None:
        before = self.snapshot()
        breaker = self.svc().store.breaker()
        try:
            out = run_autobuy(self.svc(), TreasuryAutobuyInput(mode=mode, dry_run=dry_run))  # type: ignore[arg-type]
            for e in out.executions:
                event(f"agent execute: {e.outcome}")
        except ButlerError as exc:
            event(f"agent: {exc.code}")
        after = self.snapshot()
        if dry_run or mode == "evaluate":
            assert after == before, "a dry run or an evaluation changed something"
        new = {i for i, _ in after[1]} - {i for i, _ in before[1]}
        if new:
            assert self.policy.enabled and not breaker.tripped, "proposed while disabled or broken"

    @rule()
    def agent_buys(self) -> None:
        """The common path, given its own rule so it is chosen often: propose and send what the policy allows."""
        self.agent_autobuy("execute", False)

    @precondition(lambda self: self.has(IntentState.PROPOSED))
    @rule(data=st.data(), then_execute=st.booleans())
    def person_approves(self, data: st.DataObject, then_execute: bool) -> None:
        intent_id = self.pick(data, IntentState.PROPOSED)
        try:
            self.svc().approve(intent_id, "person:test")
            if then_execute:
                event(f"person execute: {self.svc().execute(intent_id, dry_run=False, actor='person:test').outcome}")
        except ButlerError as exc:
            event(f"person: {exc.code}")

    @precondition(lambda self: self.has(IntentState.PROPOSED, IntentState.APPROVED))
    @rule(data=st.data())
    def person_rejects(self, data: st.DataObject) -> None:
        self.svc().reject(self.pick(data, IntentState.PROPOSED, IntentState.APPROVED), "person:test")

    @precondition(lambda self: self.has())
    @rule(data=st.data(), dry_run=st.booleans())
    def person_executes(self, data: st.DataObject, dry_run: bool) -> None:
        intent_id = self.pick(data)
        before = self.snapshot()
        try:
            event(f"person execute: {self.svc().execute(intent_id, dry_run=dry_run, actor='person:test').outcome}")
        except ButlerError as exc:
            event(f"person execute: {exc.code}")
        if dry_run:
            assert self.snapshot() == before, "a dry run changed something"

    @rule(fault=st.sampled_from(range(len(FAULTS))))
    def network_fault(self, fault: int) -> None:
        kind, kw = FAULTS[fault]
        self.circle.fault_transfer(kind, **kw)

    @rule(fail=st.booleans())
    def chain_outcome(self, fail: bool) -> None:
        if fail:
            self.circle.final_state_for[OR_DEST.lower()] = "FAILED"
        else:
            self.circle.final_state_for.clear()

    @precondition(lambda self: self.has(*UNRESOLVED_STATES))
    @rule()
    def reconcile(self) -> None:
        self.svc().reconcile()

    @precondition(lambda self: self.svc().store.breaker().tripped)
    @rule()
    def person_resets_breaker(self) -> None:
        event("breaker tripped and reset")
        self.svc().reset_breaker("person:test")

    # -- invariants --
    @invariant()
    def money_rules_hold(self) -> None:
        service = self.svc()
        intents = {i.id: i for i in service.store.intents()}
        per_ref: dict[str, int] = defaultdict(int)
        day: dict[str, Decimal] = defaultdict(Decimal)
        month: dict[str, Decimal] = defaultdict(Decimal)
        nonfinal = Decimal(0)
        for t in list(self.circle.transfers.values()):
            assert t.ref_id in intents, "a transfer without an intent"
            intent = intents[t.ref_id]
            per_ref[t.ref_id] += 1
            assert t.idempotency_key == intent.idempotency_key
            assert t.amount == intent.amount <= self.policy.caps.per_transaction
            assert self.policy.destination_allowed(intent.provider, t.destination), "paid off the allowlist"
            assert intent.sent_at is not None
            if t.state in ("FAILED", "CANCELLED", "DENIED"):
                continue  # moved no money: not spend
            day[utc_day(intent.sent_at)] += t.amount
            month[utc_month(intent.sent_at)] += t.amount
            if t.state != "COMPLETE":
                nonfinal += t.amount
        assert all(n == 1 for n in per_ref.values()), "an intent paid twice"
        assert all(v <= self.policy.caps.daily for v in day.values()), "daily cap exceeded"
        assert all(v <= self.policy.caps.monthly for v in month.values()), "monthly cap exceeded"
        if self.circle.transfers:
            assert self.circle.usdc - nonfinal >= self.policy.min_wallet_reserve, "reserve broken"
        else:
            assert self.circle.usdc == self.start_balance

        entries = service.store.entries()
        assert not imbalance(EntryDraft(account=e.account, currency=e.currency, amount=e.amount) for e in entries)
        complete = [i for i in intents.values() if i.state is IntentState.COMPLETE]
        assert len(entries) == 4 * len(complete)
        assert {e.intent_id for e in entries} == {i.id for i in complete}
        assert all(per_ref[i.id] == 1 and self.circle.transfers_for(i.id)[0].state == "COMPLETE" for i in complete)


TreasuryMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestTreasuryStateful = TreasuryMachine.TestCase
