"""The treasury's policy reads only what counts (open intents and those sent this month, issue 12) and decides
exactly as it would over every intent ever made: on both ledgers."""

from __future__ import annotations

from decimal import Decimal

from butler_skill.core import treasury as rules
from butler_skill.core.treasury import IntentState
from butler_skill.host.context import Context
from butler_skill.store.treasury import TreasuryStore
from tests.store.test_bounded_reads import _seed_intents


def test_the_treasury_reads_what_counts_and_decides_as_with_every_intent(ctx: Context) -> None:
    _seed_intents(ctx)
    store = TreasuryStore(ctx.db)
    now = ctx.now()
    everything = [i.facts() for i in store.intents()]
    counting = [i.facts() for i in store.intents_that_count(now)]
    # Long-final intents sent before this month are left out ...
    assert {i.id for i in everything} - {i.id for i in counting} >= {"int0", "int11"}
    assert all(i.state in rules.OPEN_STATES or (i.sent_at is not None and i.sent_at.month == now.month)
               for i in counting)
    # ... and what the rules make of the bounded set is what they make of all of it.
    assert rules.spend_windows(counting, now) == rules.spend_windows(everything, now)
    for other in everything:
        assert rules.spend_windows(store.intents_that_count(now, exclude=other.id), now) == rules.spend_windows(
            everything, now, exclude=other.id)
    open_ids = {i.id for i in everything if i.state in rules.OPEN_STATES}
    assert open_ids <= {i.id for i in counting}
    assert rules.spend_windows(counting, now).pending == Decimal("14.0")  # int5 6.5 + int6 7.5 (proposed, approved)
    assert IntentState.COMPLETE in {i.state for i in counting}
