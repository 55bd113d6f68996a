"""Times in the database: fixed-width UTC text, so SQL string comparison is time comparison."""

from __future__ import annotations

from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse_ts(text: str) -> datetime:
    # fromisoformat reads the trailing Z as UTC (Python 3.11) and is an order of magnitude faster than strptime.
    return datetime.fromisoformat(text)
