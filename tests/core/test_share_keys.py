"""choose_share_keys (a plan's keys in one pass over a heap) chooses what choose_key chose share after share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.selection import KeyView, choose_key
from butler_skill.core.share_keys import choose_share_keys

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def one_by_one(views: list[KeyView], shares: list[int], preferred: str | None) -> tuple[list[int | None],
                                                                                         list[KeyView]]:
    """The definition: each share on views that hold the shares chosen before it."""
    views = list(views)
    index = {v.key_id: i for i, v in enumerate(views)}
    chosen: list[int | None] = []
    for share in shares:
        pick = choose_key(views, share, NOW, preferred_provider=preferred)
        if pick is None:
            chosen.append(None)
            break
        i = index[pick.key_id]
        views[i] = pick._replace(reserved=pick.reserved + share)
        chosen.append(i)
    return chosen, views


@st.composite
def key_views(draw: st.DrawFn) -> list[KeyView]:
    n = draw(st.integers(min_value=0, max_value=12))
    views = []
    for i in range(n):
        limit = draw(st.integers(min_value=0, max_value=20_000))
        used = draw(st.integers(min_value=0, max_value=limit + 2_000))  # a late report can pass the limit
        reserved = draw(st.integers(min_value=0, max_value=max(0, limit - used) + 500))
        cooldown = draw(st.sampled_from([None, NOW - timedelta(seconds=1), NOW, NOW + timedelta(minutes=5)]))
        views.append(KeyView(f"k{draw(st.integers(0, 3))}{i:02d}", draw(st.sampled_from(["groq", "openai", "nvidia"])),
                             f"s{i % 3}", limit, used, reserved, draw(st.sampled_from([0.0, 0.1, 0.25, 1.0])),
                             draw(st.sampled_from([0.0, 0.2, 0.5])), cooldown, draw(st.booleans() | st.just(True))))
    return draw(st.permutations(views))


@settings(max_examples=500)
@given(key_views(), st.lists(st.integers(min_value=1, max_value=6_000), max_size=40),
       st.sampled_from([None, "groq", "openai", "anthropic"]))
def test_the_heap_chooses_what_choose_key_chose_share_after_share(views: list[KeyView], shares: list[int],
                                                                   preferred: str | None) -> None:
    assert choose_share_keys(views, shares, NOW, preferred_provider=preferred) == one_by_one(views, shares, preferred)


@given(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=200))
def test_equal_keys_take_turns_as_their_room_changes(shares: list[int]) -> None:
    views = [KeyView(f"k{i}", "groq", "s", 1_000, 0, 0, 0.1, 0.1) for i in range(3)]
    assert choose_share_keys(views, shares, NOW) == one_by_one(views, shares, None)


@settings(max_examples=300)
@given(key_views(), st.data(), st.sampled_from([None, "groq", "openai"]))
def test_shares_that_fill_a_key_exactly(views: list[KeyView], data: st.DataObject, preferred: str | None) -> None:
    rooms = sorted({v.remaining for v in views} - {0}) or [1]
    shares = data.draw(st.lists(st.sampled_from(rooms) | st.sampled_from([r // 2 for r in rooms if r > 1] or [1]),
                                max_size=20))
    assert choose_share_keys(views, shares, NOW, preferred_provider=preferred) == one_by_one(views, shares, preferred)
