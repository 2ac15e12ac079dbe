"""Whether the homeserver answers now, asked on a schedule, so the bridge can start and run without it.

The bridge serves citizens whether or not the homeserver is there: what they write is stored and
acknowledged, and delivered once it is back. ``HomeserverWatch`` asks ``/_matrix/client/versions`` every
few seconds (every second while it gets no answer), tells whoever waits when the homeserver first answers
(start-up's homeserver steps), and calls ``on_back`` each time it answers again after failing, so that
work waiting out a long back-off goes at once. ``/health`` reads ``reachable``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import aiohttp

from . import cs_api
from .homeserver import HomeserverApi, MatrixError

log = logging.getLogger(__name__)


def transient(error: BaseException) -> bool:
    """A failure that passes by itself: no answer (connection refused, reset, timeout) or the homeserver (or a
    proxy in front of it) saying it cannot serve now. A refusal (a bad as_token, say) is not."""
    if isinstance(error, MatrixError):
        return error.status >= 500 or error.status == 429
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, OSError))


class HomeserverWatch:
    def __init__(self, api: HomeserverApi, on_back: Callable[[], Awaitable[None]] | None = None, *,
                 every: float = 5.0, every_down: float = 1.0) -> None:
        self.api, self.on_back = api, on_back
        self.every, self.every_down = every, every_down
        self.reachable = False
        self.changed = time.monotonic()            # when ``reachable`` last changed
        self._answered = asyncio.Event()           # the homeserver has answered at least once
        self._task: asyncio.Task | None = None
        self._last_error = ""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait_answered(self) -> None:
        """Until the homeserver has answered once (returns at once after that)."""
        await self._answered.wait()

    async def probe(self) -> bool:
        """Ask once; True when the homeserver answered. Updates ``reachable`` and runs ``on_back`` when it is back."""
        try:
            await asyncio.wait_for(self.api.send(cs_api.versions(), what="versions"), timeout=10)
            up, error = True, ""
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not transient(e):
                log.warning("homeserver refused the reachability check: %s", e)
            up, error = False, f"{type(e).__name__}: {e}"
        was, first = self.reachable, not self._answered.is_set()
        if up != was:
            self.reachable, self.changed = up, time.monotonic()
        if up and first:
            log.info("homeserver answers")
            self._answered.set()
        elif up and not was:
            log.info("homeserver answers again")
            if self.on_back is not None:
                try:
                    await self.on_back()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("after the homeserver came back: %s", e)
        elif not up and (was or error != self._last_error):
            log.warning("homeserver not answering (%s); citizens' messages are kept and sent when it answers",
                        error)
        self._last_error = error
        return up

    async def _run(self) -> None:
        while True:
            up = await self.probe()
            await asyncio.sleep(self.every if up else self.every_down)
