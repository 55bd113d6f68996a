"""Times in the database: fixed-width UTC text, so SQL string comparison is time comparison."""

from __future__ import annotations

from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    utc = moment.astimezone(UTC)
    if utc.year < 1000:  # isoformat below pads years too; strftime's %Y would not on every platform
        return utc.strftime(_FORMAT)
    # The same text as _FORMAT, several times faster than strftime (an allocation writes four timestamps).
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_ts(text: str) -> datetime:
    # fromisoformat reads the trailing Z as UTC (Python 3.11) and is an order of magnitude faster than strptime.
    return datetime.fromisoformat(text)
