"""UTC days. A budget day starts at 00:00 UTC whatever the host's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: Butler only accepts timezone-aware times")
    return moment.astimezone(UTC)


def utc_day(moment: datetime) -> str:
    """The budget day a moment belongs to, as YYYY-MM-DD."""
    return _require_aware(moment).date().isoformat()


def next_utc_midnight(moment: datetime) -> datetime:
    """The first instant of the next budget day."""
    utc = _require_aware(moment)
    start = datetime(utc.year, utc.month, utc.day, tzinfo=UTC)
    return start + timedelta(days=1)


def utc_month(moment: datetime) -> str:
    return _require_aware(moment).strftime("%Y-%m")
