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
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _sleep(self, seconds: float) -> None:
        """Until woken or ``seconds`` pass."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    async def _run(self) -> None:
        raise NotImplementedError
