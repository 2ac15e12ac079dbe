"""What the process may hold open, and what it does when that runs short.

Every open chat costs file descriptors (its WebSocket, requests in flight), and a service manager's
default limit is small (systemd: 1,024 soft). Past the limit everything that opens a file fails at once:
``accept()``, SQLite's files, connections to the homeserver. So:

- at start-up the soft limit is raised to the hard one, as Synapse does (``raise_open_files_limit``);
- ``OpenFiles`` counts what is open and keeps a reserve: new chats are refused with a "busy" answer while
  fewer than ``reserve`` descriptors are free, and new connections to the public listener are answered
  "busy" and closed while fewer than half of it are, so the chats already open keep what they need;
- a resource that runs out anyway (EMFILE, ENFILE, ENOMEM, ENOBUFS; SQLite's "unable to open database
  file") is reported by ``Shortages``: one clear line, then at most one line per kind a minute with the
  count of what was not logged. asyncio's accept loop (3.11, ``selector_events._accept_connection``)
  reports a full descriptor table once per pending connection and retries each one a second later, which
  once filled 1.46 GB of log in 11 minutes; ``loop_exception_handler`` routes it through ``Shortages``.

Memory is the other resource a burst of citizens takes: ``FreedHeap`` hands what the C heap keeps free
after they leave back to the system (glibc's ``malloc_trim``).
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import resource
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

SHORTAGE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# SQLite's words for the same (SQLITE_CANTOPEN, SQLITE_NOMEM, SQLITE_FULL): peewee (nio's store) raises them too.
SQLITE_SHORTAGE = ("unable to open database file", "out of memory", "database or disk is full")
ACCEPT_MESSAGE = "socket.accept() out of system resource"
MAX_RAISED_LIMIT = 1 << 20          # a hard limit of "unlimited" is not a number setrlimit takes for files
MIN_RESERVE = 64


def raise_open_files_limit() -> tuple[int, int, int]:
    """Raise the soft open-files limit to the hard one; (before, now, hard). Logged either way."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, MAX_RAISED_LIMIT) if hard != resource.RLIM_INFINITY else MAX_RAISED_LIMIT
    now = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            now = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, e)
    log.info("open-files limit: %d (soft, was %d; hard %s)%s", now, soft,
             "unlimited" if hard == resource.RLIM_INFINITY else hard,
             "" if now >= 4096 else " — low for a busy bridge: set LimitNOFILE (config/precinct.service)")
    return soft, now, hard


def is_shortage(error: BaseException | None) -> bool:
    """Whether an error means a resource ran out (not a bug, not bad input)."""
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, OSError) and error.errno in SHORTAGE_ERRNOS:
        return True
    if isinstance(error, sqlite3.OperationalError) or type(error).__name__ == "OperationalError":
        return any(words in str(error) for words in SQLITE_SHORTAGE)
    cause = error.__cause__ or error.__context__ if error is not None else None
    return cause is not None and cause is not error and is_shortage(cause)


def _count_open() -> int | None:
    """Descriptors open now; None where /proc cannot tell (not Linux). Listing needs a descriptor itself:
    when there is none left, every one is open."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1     # less the one listdir itself holds
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENFILE):
            return _soft_limit()
        return None


def _soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_RAISED_LIMIT if soft == resource.RLIM_INFINITY else soft


class OpenFiles:
    """How many descriptors are open and whether the reserve is reached.

    Counting lists /proc/self/fd, so a count is kept for ``max_age`` seconds and connections accepted since
    are added to it (``opened``); a burst of connections cannot all slip in under one old count.
    """

    def __init__(self, reserve: int = 0, *, count: Callable[[], int | None] = _count_open,
                 limit: Callable[[], int] = _soft_limit, clock: Callable[[], float] = time.monotonic,
                 max_age: float = 0.25) -> None:
        self._reserve, self._count, self._limit, self._clock, self.max_age = reserve, count, limit, clock, max_age
        self._counted: int | None = None
        self._counted_at = -max_age
        self._since = 0

    @property
    def limit(self) -> int:
        return self._limit()

    @property
    def reserve(self) -> int:
        """Descriptors kept for the chats already open: configured, or an eighth of the limit (at least 64)."""
        return self._reserve or max(MIN_RESERVE, self.limit // 8)

    def open(self) -> int | None:
        now = self._clock()
        if self._counted is None or now - self._counted_at >= self.max_age:
            self._counted, self._counted_at, self._since = self._count(), now, 0
        return None if self._counted is None else self._counted + self._since

    def opened(self, n: int = 1) -> None:
        self._since += n

    def free(self) -> int | None:
        count = self.open()
        return None if count is None else self.limit - count

    def short_for_chats(self) -> bool:
        free = self.free()
        return free is not None and free < self.reserve

    def short_for_connections(self) -> bool:
        free = self.free()
        return free is not None and free < self.reserve // 2

    def describe(self) -> str:
        count = self.open()
        return f"{'?' if count is None else count} of {self.limit} file descriptors open"


@dataclass
class _Kind:
    logged_at: float
    unlogged: int = 0


class Shortages:
    """Reports resources running out: the first time of each kind at once, then at most once per
    ``interval`` seconds with how many went unlogged in between. Never a line per failed call."""

    def __init__(self, open_files: OpenFiles | None = None, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, logger: logging.Logger = log) -> None:
        self.open_files, self.interval, self._clock, self._log = open_files, interval, clock, logger
        self._kinds: dict[str, _Kind] = {}
        self.reported = 0                   # every report, logged or not (tests, metrics)

    def report(self, kind: str, what: str, error: BaseException | None = None) -> None:
        """``kind``: what ran short where (e.g. "accept", "new chat"); ``what``: what it means, for the log."""
        self.reported += 1
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen.logged_at < self.interval:
            seen.unlogged += 1
            return
        files = f"; {self.open_files.describe()}" if self.open_files is not None else ""
        cause = f" ({type(error).__name__}: {error})" if error is not None else ""
        more = (f" [{seen.unlogged} more since the last report {now - seen.logged_at:.0f} s ago]"
                if seen is not None and seen.unlogged else "")
        self._log.error("resources short (%s): %s%s%s%s; at most one line a minute is logged about this",
                        kind, what, cause, files, more)
        self._kinds[kind] = _Kind(now)


def loop_exception_handler(shortages: Shortages) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event loop exception handler that reports resource shortages through ``shortages``
    and leaves everything else to the loop's default handler."""
    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if context.get("message") == ACCEPT_MESSAGE or (isinstance(error, OSError) and is_shortage(error)):
            shortages.report("accept" if context.get("message") == ACCEPT_MESSAGE else "event loop",
                             "new connections wait until descriptors are free", error)
            return
        loop.default_exception_handler(context)
    return handle


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h, glibc 2.33 and later)."""
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


class FreedHeap:
    """Gives the memory glibc's heap holds free back to the system.

    glibc returns freed memory on its own only from the top of its heap; what a burst of chats freed in the
    middle (the heap stays pinned by whatever was allocated after it) stays in the process for good. After
    a thousand citizens connected, 200 of them talking, and all closed (bench/load.py --connected 1000
    --active 200), 8–15 MB of the bridge's 34 MB heap was free but kept. ``malloc_trim(0)`` hands every
    whole free page back (madvise), whatever its place. It runs when at least ``least_bytes`` are free, so
    a quiet bridge does nothing. Elsewhere than glibc (musl, macOS) there is no such call: nothing is done.
    """

    EVERY = 10.0                       # seconds between looks: mallinfo2 walks the free lists, a fraction of a ms

    def __init__(self, least_bytes: int = 4 << 20) -> None:
        self.least_bytes = least_bytes
        self.given_back = 0            # times malloc_trim ran
        self._libc = _glibc()

    @property
    def supported(self) -> bool:
        return self._libc is not None

    def free_bytes(self) -> int | None:
        """Bytes free inside glibc's heap (all arenas); None without glibc."""
        if self._libc is None:
            return None
        return int(self._libc.mallinfo2().fordblks)

    def give_back(self) -> bool:
        """Trim when enough is free; whether it trimmed."""
        free = self.free_bytes()
        if free is None or free < self.least_bytes:
            return False
        assert self._libc is not None
        self._libc.malloc_trim(0)
        self.given_back += 1
        log.debug("gave back freed heap: %.1f MB were free", free / 1e6)
        return True


def _glibc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallinfo2, trim = libc.mallinfo2, libc.malloc_trim
    except (OSError, AttributeError):
        return None                    # not glibc, or older than 2.33
    mallinfo2.restype, mallinfo2.argtypes = _MallInfo2, []
    trim.restype, trim.argtypes = ctypes.c_int, [ctypes.c_size_t]
    return libc
