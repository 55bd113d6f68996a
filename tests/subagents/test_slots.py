"""The runner's concurrency limit (subagents/slots.py): never more than n holders, first come first served, and no
slot lost to a cancellation (while waiting, or just after being handed a slot)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.subagents.slots import Slots


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), holds=st.lists(st.integers(0, 3), min_size=1, max_size=30),
       cancel=st.sets(st.integers(0, 29)), cancel_after=st.integers(0, 4))
def test_property_never_more_than_n_in_order_and_no_slot_lost(n: int, holds: list[int], cancel: set[int],
                                                             cancel_after: int) -> None:
    async def go() -> tuple[int, list[int], int]:
        slots = Slots(n)
        inside, peak, order = 0, 0, []

        async def one(i: int, turns: int) -> None:
            nonlocal inside, peak
            async with slots:
                inside += 1
                peak = max(peak, inside)
                order.append(i)
                try:
                    for _ in range(turns):
                        await asyncio.sleep(0)
                finally:
                    inside -= 1

        tasks = [asyncio.create_task(one(i, t)) for i, t in enumerate(holds)]
        for _ in range(cancel_after):
            await asyncio.sleep(0)
        for i in cancel:
            if i < len(tasks):
                tasks[i].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return peak, order, slots.free

    peak, order, free = asyncio.run(go())
    assert peak <= n
    assert order == sorted(order)  # first come, first served
    assert free == n  # every slot back
    assert set(range(len(holds))) - cancel <= set(order)  # everyone not cancelled got in


def test_a_waiter_cancelled_right_after_being_handed_a_slot_passes_it_on() -> None:
    async def go() -> list[str]:
        slots = Slots(1)
        seen: list[str] = []
        await slots.__aenter__()
        second = asyncio.create_task(slots.__aenter__())
        third_done = asyncio.Event()

        async def third() -> None:
            async with slots:
                seen.append("third")
            third_done.set()

        t3 = asyncio.create_task(third())
        await asyncio.sleep(0)
        await slots.__aexit__(None, None, None)  # hands the slot to `second`...
        second.cancel()  # ...which is cancelled before it resumes: the slot must go on to `third`
        await asyncio.gather(second, return_exceptions=True)
        await asyncio.wait_for(third_done.wait(), 5)
        await t3
        seen.append(f"free={slots.free}")
        return seen

    assert asyncio.run(go()) == ["third", "free=1"]
