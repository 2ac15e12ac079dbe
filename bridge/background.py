"""Background work: a loop that sleeps until woken (or a timeout) — the shape of the bridge's senders —,
``Periodic`` work, ``OrderedSends``, jobs run side by side except those on one subject, ``Retries``, the
pauses of work that failed, cut short together when whatever it waited for is back, and ``Mailbox``, a
light queue."""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


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
        """Until woken or ``seconds`` pass.

        The time is up when a timer wakes it: not ``wait_for`` (see stop()), and not ``asyncio.timeout``, whose
        set-up and tear-down in Python cost 2 % of the bridge's CPU per chat (py-spy over bench/chat_life.py),
        the pumps sleeping again after every transaction and message."""
        if not self._wake.is_set():
            timer = asyncio.get_running_loop().call_later(seconds, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
        self._wake.clear()

    async def _run(self) -> None:
        raise NotImplementedError


class Periodic(WakeableLoop):
    """Runs ``work()`` (a function or a coroutine function) every ``seconds``, sooner when woken; a failure
    is logged and the next run comes."""

    def __init__(self, work: Callable[[], Any], seconds: float, what: str) -> None:
        super().__init__()
        self.work, self.seconds, self.what = work, seconds, what

    async def _run(self) -> None:
        while True:
            await self._sleep(self.seconds)
            try:
                done = self.work()
                if inspect.isawaitable(done):
                    await done
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again later", self.what)


class Retries:
    """The pauses between attempts of work that failed (a send, a chat's set-up): each waits its own back-off,
    or less when ``now()`` says that what they failed on (the homeserver) answers again, so a backlog built up
    during an outage goes at once rather than after back-offs grown to half a minute."""

    def __init__(self) -> None:
        self._back = asyncio.Event()

    def now(self) -> None:
        """Every pause under way ends; later pauses wait again."""
        self._back.set()
        self._back = asyncio.Event()

    async def pause(self, seconds: float) -> None:
        back = self._back
        try:
            async with asyncio.timeout(seconds):
                await back.wait()
        except TimeoutError:
            pass

    async def attempt(self, work: Callable[[], Awaitable[Any]], what: str, *, tries: int,
                      passing: Callable[[BaseException], bool]) -> bool:
        """``work()`` until it succeeds, giving up after ``tries`` failures of its own; failures ``passing`` says
        pass by themselves (the homeserver away) are not counted however long they last — an alert or an
        invite must not be dropped because the homeserver restarted. Pauses double from 0.5 s to 30 s (cut
        short by ``now()``). False when it gave up."""
        failures, delay = 0, 0.5
        while True:
            try:
                await work()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 0 if passing(e) else 1
                if failures >= tries:
                    log.warning("%s failed %d times, given up: %s", what, failures, e)
                    return False
                log.warning("%s failed (again in %.1f s): %s", what, delay, e)
            await self.pause(delay)
            delay = min(delay * 2, 30)


class OrderedSends:
    """Run jobs with at most ``in_flight`` at once, those on the same subject one after another in the
    order given (an edit never overtakes the message it edits). ``run(job)`` does one job; what it
    raises is its own affair (callers retry inside it)."""

    def __init__(self, run: Callable[[Any], Awaitable[None]], in_flight: int) -> None:
        self._run = run
        self._slots = asyncio.Semaphore(in_flight)
        self._waiting: dict[Hashable, list[Any]] = {}        # subject being sent → jobs queued behind it
        self._tasks: set[asyncio.Task] = set()

    @property
    def busy(self) -> int:
        return len(self._tasks)

    async def slot_free(self) -> None:
        """Return once a slot is free, for a single submitter that picks its next job only then."""
        await self._slots.acquire()
        self._slots.release()

    async def submit(self, subject: Hashable, job: Any) -> None:
        """Queue ``job``; waits only for a free slot when its subject is not already being sent."""
        if subject in self._waiting:
            self._waiting[subject].append(job)
            return
        self._waiting[subject] = []
        await self._slots.acquire()
        task = asyncio.create_task(self._in_order(subject, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_order(self, subject: Hashable, job: Any) -> None:
        try:
            while True:
                try:
                    await self._run(job)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("job on %r failed", subject)
                queue = self._waiting.get(subject)
                if not queue:
                    return
                job = queue.pop(0)
        finally:
            self._waiting.pop(subject, None)
            self._slots.release()

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Mailbox(Generic[T]):
    """A bounded first-in, first-out queue with one reader and one writer that waits.

    What ``asyncio.Queue`` does for them in a tenth of its memory: a list (it holds a few items at a time),
    and a future only while someone waits (``asyncio.Queue`` holds four deques, 600 bytes each, and an
    event). Every open citizen connection holds two, so at a thousand connections this is megabytes of the
    bridge's high-water mark (bench/load.py)."""

    __slots__ = ("_items", "_limit", "_getter", "_putter")

    def __init__(self, limit: int) -> None:
        self._items: list[T] = []
        self._limit = limit
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> bool:
        """False, and nothing queued, when full."""
        if len(self._items) >= self._limit:
            return False
        self._items.append(item)
        self._getter = _wake(self._getter)
        return True

    async def put(self, item: T) -> None:
        """Waits while the mailbox is full."""
        while len(self._items) >= self._limit:
            if self._putter is not None and not self._putter.done():
                raise RuntimeError("a Mailbox has one writer that waits")
            self._putter = asyncio.get_running_loop().create_future()
            await self._putter
        self._items.append(item)
        self._getter = _wake(self._getter)

    def get_nowait(self) -> T:
        """IndexError when empty."""
        item = self._items.pop(0)
        self._putter = _wake(self._putter)
        return item

    async def get(self) -> T:
        while not self._items:
            if self._getter is not None and not self._getter.done():
                raise RuntimeError("a Mailbox has one reader")
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        return self.get_nowait()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
    return None
