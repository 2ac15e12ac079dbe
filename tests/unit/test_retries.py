"""Retries (bridge/background.py): a pause after a failure lasts its back-off, or ends when now() says the
homeserver is back; pauses begun after now() wait again."""
from __future__ import annotations

import asyncio

from bridge.background import Retries


async def test_now_ends_every_pause_under_way_and_later_pauses_wait_again():
    retries = Retries()
    pauses = [asyncio.create_task(retries.pause(3600)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(p.done() for p in pauses)
    retries.now()
    await asyncio.wait_for(asyncio.gather(*pauses), timeout=5)
    later = asyncio.create_task(retries.pause(3600))
    done, _ = await asyncio.wait({later}, timeout=0.2)     # the earlier now() does not end it
    assert not done
    retries.now()
    await asyncio.wait_for(later, timeout=5)


async def test_a_pause_ends_by_itself_after_its_seconds():
    await asyncio.wait_for(Retries().pause(0.01), timeout=5)


async def test_failures_that_pass_by_themselves_are_not_counted_however_many():
    """An alert or invite is not dropped because the homeserver was away for many attempts; a failure of its own
    (a refusal) still ends it after ``tries``."""
    calls: list[str] = []

    async def away_then_ok() -> None:
        calls.append("try")
        if len(calls) < 12:
            raise ConnectionRefusedError("homeserver away")

    retries = Retries()
    retries.pause = _no_pause                                      # type: ignore[method-assign]
    assert await retries.attempt(away_then_ok, "alert", tries=3, passing=lambda e: isinstance(e, OSError))
    assert len(calls) == 12

    async def refused() -> None:
        calls.append("refused")
        raise ValueError("M_FORBIDDEN")
    calls.clear()
    assert not await retries.attempt(refused, "invite", tries=3, passing=lambda e: isinstance(e, OSError))
    assert calls == ["refused"] * 3


async def _no_pause(seconds: float) -> None:
    await asyncio.sleep(0)
