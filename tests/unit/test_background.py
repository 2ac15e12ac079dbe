"""The background loops' shape (bridge/background.py): woken or timed out, and always stoppable."""
from __future__ import annotations

import asyncio

from bridge.background import WakeableLoop


class Stubborn(WakeableLoop):
    """Swallows the first cancellation, as code awaiting Python 3.11's wait_for can by accident."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0
        self.swallowed = False

    async def _run(self) -> None:
        while True:
            try:
                await self._sleep(0.05)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed = True
            self.passes += 1


async def test_a_loop_that_swallows_a_cancellation_still_stops():
    loop = Stubborn()
    loop.start()
    await asyncio.sleep(0.2)
    await asyncio.wait_for(loop.stop(), 10)
    assert loop.swallowed and loop._task is None


async def test_wake_ends_the_sleep_at_once():
    class Once(WakeableLoop):
        woke = asyncio.Event()

        async def _run(self) -> None:
            await self._sleep(60)
            self.woke.set()

    loop = Once()
    loop.start()
    await asyncio.sleep(0)
    loop.wake()
    await asyncio.wait_for(Once.woke.wait(), 10)
    await loop.stop()
