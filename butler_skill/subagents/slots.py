"""At most `n` sub-tasks calling a provider at once, first come first served, with O(1) work per release.

`asyncio.Semaphore` (Python 3.11) wakes the next waiter by scanning its queue from the front past every waiter
already woken but not yet resumed: when 100 calls end in one turn of the event loop with 900 sub-tasks queued, the
100 releases scan 1 + 2 + ... + 100 futures (about 5,000 `done()` calls per burst, 70,000 in a run of 1,000
sub-tasks). Here a release hands its slot straight to the first waiter still waiting (popped off the queue), so
each waiter is looked at once. Cancellation: a waiter cancelled while it waits is skipped when its turn comes; one
cancelled after a slot was handed to it gives the slot on before the cancellation goes on, so no slot is lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("at least one slot")
        self._free = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future  # resolved by a release: that slot is now this waiter's
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot, then cancelled: pass it on
                self._release()
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():  # (a waiter cancelled while it waited is done: skipped)
                future.set_result(None)
                return
        self._free += 1

    @property
    def free(self) -> int:
        """Slots no one holds or has been handed (for tests)."""
        return self._free
