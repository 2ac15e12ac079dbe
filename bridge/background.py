"""A background loop that sleeps until woken (or a timeout) — the shape of the bridge's senders."""
from __future__ import annotations

import asyncio


class WakeableLoop:
    """Subclasses write ``_run``; ``wake()`` is safe to call from any code on the event loop."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            # Cancelled again until it ends: a cancellation swallowed on the way (Python 3.11's wait_for
            # drops one that arrives as the awaited thing completes) must not hold the bridge's stop forever.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1)
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _sleep(self, seconds: float) -> None:
        """Until woken or ``seconds`` pass."""
        try:
            async with asyncio.timeout(seconds):      # not wait_for: see stop()
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _run(self) -> None:
        raise NotImplementedError
