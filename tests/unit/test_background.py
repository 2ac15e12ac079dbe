"""The background loops' shape (bridge/background.py): woken or timed out, and always stoppable."""
from __future__ import annotations

import asyncio

from bridge.background import Mailbox, OrderedSends, Periodic, WakeableLoop


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


async def test_the_sleep_ends_when_its_time_is_up_and_a_wake_leaves_no_timer_behind():
    class Sleeper(WakeableLoop):
        async def _run(self) -> None:
            pass

    loop = Sleeper()
    await asyncio.wait_for(loop._sleep(0.01), 10)          # nobody wakes it: its time runs out
    assert not loop._wake.is_set()
    sleeping = asyncio.create_task(loop._sleep(0.2))
    await asyncio.sleep(0)
    loop.wake()
    await asyncio.wait_for(sleeping, 10)
    await asyncio.sleep(0.4)                               # past the woken sleep's time
    assert not loop._wake.is_set()                         # its timer did not fire later: the next sleep sleeps
    loop.wake()
    await asyncio.wait_for(loop._sleep(60), 10)            # a wake before the sleep ends it at once


async def test_ordered_sends_keep_one_subject_in_order_and_run_others_side_by_side():
    """The dispatch room's sender (officers/dispatch.py): a chat's notice, then its edits, in that order,
    while other chats' notices go out beside them, never more than ``in_flight`` at once."""
    gates: dict[str, asyncio.Event] = {}
    started: list[str] = []
    running = peak = 0

    async def run(job: str) -> None:
        nonlocal running, peak
        started.append(job)
        running += 1
        peak = max(peak, running)
        try:
            await gates.setdefault(job, asyncio.Event()).wait()
        finally:
            running -= 1

    sends = OrderedSends(run, in_flight=2)
    await sends.submit("chat 1", "1: notice")
    await sends.submit("chat 1", "1: edit")
    await sends.submit("chat 2", "2: notice")
    await asyncio.sleep(0)
    assert started == ["1: notice", "2: notice"]          # the edit waits for its notice; chat 2 does not

    submitting = asyncio.create_task(sends.submit("chat 3", "3: notice"))
    await asyncio.sleep(0)
    assert not submitting.done()                          # both slots taken: the third waits for one
    gates.setdefault("1: notice", asyncio.Event()).set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == ["1: notice", "2: notice", "1: edit"]   # chat 1's edit went on in chat 1's slot…
    assert not submitting.done()                               # …so chat 3 still waits for a free one
    gates.setdefault("2: notice", asyncio.Event()).set()
    await asyncio.wait_for(submitting, 5)
    for job in ["1: edit", "3: notice"]:
        gates.setdefault(job, asyncio.Event()).set()
    while sends.busy:
        await asyncio.sleep(0.01)
    assert started == ["1: notice", "2: notice", "1: edit", "3: notice"] and peak == 2


async def test_a_failed_job_does_not_stop_the_ones_behind_it():
    done: list[str] = []

    async def run(job: str) -> None:
        if job == "bad":
            raise RuntimeError("homeserver said no")
        done.append(job)

    sends = OrderedSends(run, in_flight=1)
    await sends.submit("chat 1", "bad")
    await sends.submit("chat 1", "edit")
    while sends.busy:
        await asyncio.sleep(0.01)
    assert done == ["edit"]
    await sends.stop()


async def test_a_mailbox_hands_items_out_in_order_and_wakes_its_reader():
    box: Mailbox[int] = Mailbox(10)
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)                      # the reader waits on an empty mailbox
    assert not reader.done()
    assert box.put_nowait(1) and box.put_nowait(2)
    assert await asyncio.wait_for(reader, 5) == 1
    assert await box.get() == 2 and len(box) == 0


async def test_a_full_mailbox_refuses_without_waiting_and_holds_its_writer_until_read():
    box: Mailbox[str] = Mailbox(2)
    assert box.put_nowait("a") and box.put_nowait("b")
    assert not box.put_nowait("c") and len(box) == 2      # refused, nothing queued
    writer = asyncio.create_task(box.put("c"))
    await asyncio.sleep(0)
    assert not writer.done()                               # waits while full
    assert await box.get() == "a"
    await asyncio.wait_for(writer, 5)
    assert [box.get_nowait(), box.get_nowait()] == ["b", "c"]


async def test_a_cancelled_reader_leaves_the_mailbox_usable():
    box: Mailbox[int] = Mailbox(5)
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    assert box.put_nowait(7)                                # no error waking a cancelled reader
    assert await asyncio.wait_for(box.get(), 5) == 7


async def test_periodic_work_runs_again_after_a_failure_whether_a_function_or_a_coroutine():
    runs: list[str] = []

    def plain() -> None:
        runs.append("plain")
        if len(runs) == 1:
            raise ValueError("first run fails")

    async def coroutine() -> None:
        runs.append("coroutine")
        if runs.count("coroutine") == 1:
            raise ValueError("first run fails")

    loops = [Periodic(plain, 0.01, "plain work"), Periodic(coroutine, 0.01, "coroutine work")]
    for loop in loops:
        loop.start()
    try:
        for _ in range(500):
            if runs.count("plain") >= 3 and runs.count("coroutine") >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        for loop in loops:
            await loop.stop()
    assert runs.count("plain") >= 3 and runs.count("coroutine") >= 3
