"""Properties of the read model: whatever usage lands on whatever days, the 30-day history and the spend per
label hold exactly what the tools recorded in the window, and nothing from before it."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.days import utc_day
from butler_skill.gateway import dashboard_data as data
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.store.reports import Reports, history_days
from tests.dashboard.seed import MovingClock, env_for, ok

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
work = st.lists(st.tuples(
    st.integers(min_value=0, max_value=40),            # days back
    st.sampled_from(["groq", "openai", "anthropic"]),  # preferred provider
    st.sampled_from(["a", "b", None]),                 # label
    st.integers(min_value=1, max_value=4_000),         # tokens used
    st.integers(min_value=0, max_value=86_399),        # second of that day
), max_size=12)


@settings(max_examples=20, deadline=None)
@given(work)
def test_history_and_spend_hold_exactly_the_window(items: list[tuple[int, str, str | None, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        clock = MovingClock(NOW)
        ctx = Context(env=env_for(Path(folder)), clock=clock)
        try:
            expected_days: dict[tuple[str, str], int] = defaultdict(int)
            expected_labels: dict[str, int] = defaultdict(int)
            window = set(history_days(NOW))
            for n, (back, provider, label, used, second) in enumerate(items):
                day_start = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC) - timedelta(days=back)
                clock.now = min(day_start + timedelta(seconds=second), NOW)
                ask = {"prd_text": "x", "tokens": used, "preferred_provider": provider}
                alloc = ok(call_tool("allocate_tokens", {**ask, **({"label": label} if label else {})}, ctx))
                ok(call_tool("record_usage", {"session_id": alloc["session_id"], "request_id": f"r{n}",
                                              "input_tokens": used, "output_tokens": 0, "close": True}, ctx))
                day = utc_day(clock.now)
                if day in window:
                    expected_days[(day, alloc["key_id"])] += used
                    expected_labels[label or ""] += used
            clock.now = NOW
            rows = Reports(ctx.db).history(NOW)
            assert {(r.day, r.key_id): r.used for r in rows} == dict(expected_days)
            assert all(r.reserved == 0 for r in rows)  # every session was closed
            hist = data.history(ctx)
            assert sum(sum(s.tokens) for s in hist.providers.values()) == sum(expected_days.values())
            labels = {r.name: r.used for r in Reports(ctx.db).spend_by_label(NOW)}
            assert labels == dict(expected_labels)
        finally:
            ctx.close()
