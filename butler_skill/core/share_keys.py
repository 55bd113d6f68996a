"""The key of each share of a plan: `selection.choose_key` applied share after share, each choice seeing the shares
chosen before it, in one pass over a heap instead of a look at every key per share.

Pure: no I/O, no clock (``now`` is passed in). A key's place in `choose_key`'s order is (preferred provider first,
cheapest blended price, most remaining, key id); only the remaining changes while a plan is chosen (it drops on the
key a share goes to), so the keys wait in a heap ordered that way, an entry made stale by a share is skipped when it
surfaces, and a key too full for the current share is set aside and put back afterwards. The same keys are chosen
as asking `choose_key` share by share (a property test keeps them equal): O(log k) a share when shares fit, where
the one-by-one loop looked at every one of k keys for every share.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime

from butler_skill.core.selection import KeyView, order

__all__ = ["choose_share_keys"]


def choose_share_keys(views: Sequence[KeyView], shares: Sequence[int], now: datetime, *,
                      preferred_provider: str | None = None) -> tuple[list[int | None], list[KeyView]]:
    """(for each share, the index in `views` of the key `choose_key` picks for it, or None where none can hold it
    and the choosing stops; the views with every chosen share added to its key's `reserved`)."""
    reserved = [v.reserved for v in views]
    # `choose_key`'s order with the key's index last: (preferred, avoided scope, price, -remaining, id, index).
    place = order(preferred_provider, None, 0.5)
    heap = [(*place(k), i) for i, k in enumerate(views) if k.enabled and not k.cooling(now)]
    heapq.heapify(heap)
    chosen: list[int | None] = []
    for share in shares:
        aside = []
        pick = None
        while heap:
            entry = heapq.heappop(heap)
            i = entry[5]
            k = views[i]
            remaining = max(0, k.tokens_per_day - k.used - reserved[i])
            if -entry[3] != remaining:
                continue  # stale: this key took a share since the entry was made (a fresh one is in the heap)
            if remaining < share:
                aside.append(entry)
                continue
            pick = i
            reserved[i] += share
            heapq.heappush(heap, (*entry[:3], -max(0, k.tokens_per_day - k.used - reserved[i]), *entry[4:]))
            break
        for entry in aside:
            heapq.heappush(heap, entry)
        chosen.append(pick)
        if pick is None:
            break
    return chosen, [v._replace(reserved=r) if r != v.reserved else v for v, r in zip(views, reserved, strict=True)]
