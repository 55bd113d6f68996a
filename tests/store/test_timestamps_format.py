"""The fast timestamp writer gives exactly the fixed-width text of its format, so SQL ordering stays time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from butler_skill.core.days import utc_day
from butler_skill.store.timestamps import _FORMAT, later, parse_ts, ts


@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
       st.integers(-14 * 60, 14 * 60))
def test_ts_is_the_documented_format_and_round_trips(moment: datetime, offset_min: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    text = ts(aware)
    assert text == aware.astimezone(UTC).strftime(_FORMAT)
    assert len(text) == 27 and parse_ts(text) == aware
    assert text[:10] == utc_day(aware) and text[4] == "-"  # the ledger reads the UTC day off the stamp


@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)),
       st.integers(0, 400 * 86_400))
def test_a_later_stamp_is_the_stamp_of_the_later_moment(moment: datetime, seconds: int) -> None:
    assert later(ts(moment), seconds) == ts(moment + timedelta(seconds=seconds))
