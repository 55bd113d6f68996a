"""When an alert stops being pending (`get_status`'s and the dashboard's pending alerts; `alerts.resolved_at`).

* `rotation_threshold`: while its session is on that key and open. Rotating the session off the key or ending it
  resolves it (store.ledger: `rotate_session`, `close_session`).
* `overrun`: until the end of the UTC day it was raised on. Both overruns are about a day: a key-day that counted
  more than the key's limit (the day's `overrun` figure in `get_status` / `monitor_usage` goes with the day), or a
  session that used more than its allocation (raised after the session closed, so closing cannot resolve it; the
  person has the rest of the day to see it). Nothing else resolves it: no tool acknowledges alerts, and the
  `alert` event in the history keeps it for good.

Pure: the clock is passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from butler_skill.core.days import next_utc_midnight

OVERRUN = "overrun"


def resolves_at(kind: str, created_at: datetime) -> datetime | None:
    """When an alert of `kind` raised at `created_at` resolves by itself; None when only an event resolves it."""
    return next_utc_midnight(created_at) if kind == OVERRUN else None


def pending(kind: str, created_at: datetime, now: datetime) -> bool:
    """Whether such an alert, not resolved by an event, is still pending at `now`."""
    end = resolves_at(kind, created_at)
    return end is None or now < end


def overruns_over_before(now: datetime) -> datetime:
    """Overrun alerts raised before this moment (the start of `now`'s UTC day) are over at `now`; those raised at
    or after it are pending (the rule `pending` states, as one bound a query can use)."""
    return next_utc_midnight(now) - timedelta(days=1)
