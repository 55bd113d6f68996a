"""Which key a request should use.

Order: the preferred provider first; among keys with enough capacity left today and not cooling down,
the cheapest for the request's input/output mix, then the one with most remaining, then by id so the
choice is deterministic. A rotation away from a rate limit puts keys of the failing scope last.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple


class KeyView(NamedTuple):
    """What the rule needs to know about a key right now. Immutable (a NamedTuple: built for every key on every
    allocation, and a frozen dataclass spent 1.3 µs per key in `object.__setattr__`); `_replace` makes a changed
    copy."""

    key_id: str
    provider: str
    scope: str
    tokens_per_day: int
    used: int
    reserved: int
    price_in_per_m: float
    price_out_per_m: float
    cooldown_until: datetime | None = None
    enabled: bool = True

    @property
    def remaining(self) -> int:
        return max(0, self.tokens_per_day - self.used - self.reserved)

    def cooling(self, now: datetime) -> bool:
        return self.cooldown_until is not None and self.cooldown_until > now


def blended_price(key: KeyView, input_share: float) -> float:
    return key.price_in_per_m * input_share + key.price_out_per_m * (1 - input_share)


def eligible(keys: Iterable[KeyView], need: int, now: datetime, exclude: Iterable[str] = ()) -> list[KeyView]:
    excluded = set(exclude)
    return [
        k for k in keys
        if k.enabled and k.key_id not in excluded and not k.cooling(now) and k.remaining >= need
    ]


def rank(
    keys: Sequence[KeyView],
    *,
    preferred_provider: str | None = None,
    avoid_scope: str | None = None,
    input_share: float = 0.5,
) -> list[KeyView]:
    return sorted(keys, key=order(preferred_provider, avoid_scope, input_share))


def order(preferred_provider: str | None, avoid_scope: str | None, input_share: float) -> Any:
    """A key's place in the choice (`rank`, `choose_key`, `core.share_keys`): smaller comes first."""
    return lambda k: (
        preferred_provider is not None and k.provider != preferred_provider,
        avoid_scope is not None and k.scope == avoid_scope,
        blended_price(k, input_share),
        -k.remaining,
        k.key_id,
    )


def choose_key(
    keys: Iterable[KeyView],
    need: int,
    now: datetime,
    *,
    preferred_provider: str | None = None,
    avoid_scope: str | None = None,
    exclude: Iterable[str] = (),
    input_share: float = 0.5,
) -> KeyView | None:
    # The first of `rank`'s order among the `eligible` keys, found in one pass (sorting 10,000 keys per allocation
    # was most of its cost), each key's order computed inline (no list, no per-key calls: this runs inside every
    # allocation's write lock). A property keeps it equal to `rank(eligible(...))[0]`.
    excluded = set(exclude)
    output_share = 1 - input_share
    best: KeyView | None = None
    best_order: tuple[bool, bool, float, int, str] | None = None
    for k in keys:
        if not k.enabled or k.key_id in excluded:
            continue
        until = k.cooldown_until
        if until is not None and until > now:
            continue
        remaining = max(0, k.tokens_per_day - k.used - k.reserved)
        if remaining < need:
            continue
        order = (preferred_provider is not None and k.provider != preferred_provider,
                 avoid_scope is not None and k.scope == avoid_scope,
                 k.price_in_per_m * input_share + k.price_out_per_m * output_share, -remaining, k.key_id)
        if best_order is None or order < best_order:
            best, best_order = k, order
    return best


def largest_available(keys: Iterable[KeyView], now: datetime) -> int:
    return max((k.remaining for k in keys if k.enabled and not k.cooling(now)), default=0)


def rotation_target(
    views: Sequence[KeyView],
    current: KeyView | None,
    need: int,
    now: datetime,
    *,
    rests_whole_scope: bool,
    prefer_other_scope: bool,
    only_key_id: str | None = None,
) -> KeyView | None:
    """Where a session that needs `need` more tokens goes when it leaves `current`.

    A named key (`only_key_id`) is taken if it can hold the session, else nothing. Otherwise the best
    other key; when the whole scope rests (a rate limit throttles the account) none of its keys is a
    place to go, and when another scope is preferred its keys rank last.
    """
    if only_key_id is not None:
        return next(iter(eligible([v for v in views if v.key_id == only_key_id], need, now)), None)
    if current is None:
        return choose_key(views, need, now)
    exclude = [v.key_id for v in views if v.key_id == current.key_id
               or (rests_whole_scope and v.scope == current.scope)]
    return choose_key(views, need, now, exclude=exclude, avoid_scope=current.scope if prefer_other_scope else None)
