"""Butler's own ids (`host.context.uuid_ids`): a prefix, 12 hex digits of milliseconds, 16 of the OS's CSPRNG."""

from __future__ import annotations

import re
import time

from butler_skill.host.context import uuid_ids


def test_ids_have_their_shape_are_distinct_and_ordered_by_the_millisecond_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid_ids("ses") for _ in range(2_000)]
    after = time.time_ns() // 1_000_000
    assert all(re.fullmatch(r"ses_[0-9a-f]{12}[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    millis = [int(i[4:16], 16) for i in ids]
    assert millis == sorted(millis) and before <= millis[0] and millis[-1] <= after
    # The random part varies in every position (64 bits from os.urandom, not a counter).
    tails = [i[16:] for i in ids]
    assert all(len({t[p] for t in tails}) > 1 for p in range(16))


def test_ids_minted_together_have_the_same_shape_and_are_distinct() -> None:
    from butler_skill.host.context import Context, uuid_ids_many

    before = time.time_ns() // 1_000_000
    ids = uuid_ids_many("ses", 2_000)
    after = time.time_ns() // 1_000_000
    assert len(ids) == 2_000 and len(set(ids)) == 2_000
    assert all(re.fullmatch(r"ses_[0-9a-f]{12}[0-9a-f]{16}", i) for i in ids)
    assert before <= int(ids[0][4:16], 16) <= after
    tails = [i[16:] for i in ids]
    assert all(len({t[p] for t in tails}) > 1 for p in range(16))
    counted = iter(range(10))
    ctx = Context(env={}, ids=lambda prefix: f"{prefix}-{next(counted)}")
    assert ctx.new_ids("ses", 3) == ["ses-0", "ses-1", "ses-2"]  # an injected id maker is called once per id
