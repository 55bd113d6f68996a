"""The ledger's key views share each key's blank view (store/ledger._BLANKS) instead of reading seven attributes of
the key every time: whatever the keys, counters and cooldowns, and when a key is replaced by another object with the
same id (a reloaded keys file), the views equal the definition built field by field."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.config import KeyConfig, resolve_key
from butler_skill.core.selection import KeyView
from butler_skill.models import ResolvedKey
from butler_skill.store.db import Database
from butler_skill.store.ledger import Ledger
from butler_skill.store.timestamps import ts

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
key_specs = st.lists(st.tuples(
    st.sampled_from(["groq", "openai", "anthropic"]),
    st.integers(min_value=1, max_value=10**9),          # tokens per day
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.booleans(),                                      # enabled
    st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))),  # today's counter
    st.one_of(st.none(), st.integers(-3_600, 3_600)),   # a cooldown ending this many seconds from now
), min_size=1, max_size=6)


def _key(n: int, provider: str, limit: int, price: float, enabled: bool) -> ResolvedKey:
    return resolve_key(KeyConfig(id=f"k{n}", provider=provider, limits={"tokens_per_day": limit},
                                 price_in_per_m=price, price_out_per_m=price * 2, enabled=enabled))


def _definition(k: ResolvedKey, counter: tuple[int, int] | None, until: datetime | None) -> KeyView:
    used, reserved = counter or (0, 0)
    return KeyView(k.id, k.provider, k.scope, k.tokens_per_day, used, reserved, k.price_in_per_m, k.price_out_per_m,
                   until if until is not None and until > NOW else None, k.enabled)


@settings(max_examples=40, deadline=None)
@given(key_specs, key_specs)
def test_views_equal_their_definition_across_reloaded_keys(first: list[tuple], second: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Database(Path(folder) / "state.db")
        ledger = Ledger(db)
        try:
            for specs in (first, second, first):  # the same ids again as new objects with other figures
                keys = [_key(n, p, limit, price, on) for n, (p, limit, price, on, _, _) in enumerate(specs)]
                untils = [NOW + timedelta(seconds=s) if s is not None else None for *_, s in specs]
                with db.write() as conn:
                    conn.execute("DELETE FROM key_day_counters")
                    conn.execute("DELETE FROM key_cooldowns")
                    for k, (*_, counter, _), until in zip(keys, specs, untils, strict=True):
                        if counter is not None:
                            conn.execute("INSERT INTO key_day_counters(key_id, day, used, reserved) VALUES (?,?,?,?)",
                                         (k.id, NOW.date().isoformat(), *counter))
                        if until is not None:
                            conn.execute("INSERT INTO key_cooldowns(key_id, until, reason, updated_at)"
                                         " VALUES (?,?,'rate_limit',?)", (k.id, ts(until), ts(NOW)))
                for _ in range(2):  # the second read takes the blank views made by the first
                    views = ledger.key_views(keys, NOW)
                    assert views == [_definition(k, spec[4], until)
                                     for k, spec, until in zip(keys, specs, untils, strict=True)]
        finally:
            db.close()
