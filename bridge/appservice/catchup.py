"""Catch-up: the recent timeline of each open chat's room, read back after a start, for events the
homeserver's push went past and never brought.

    start ──► +10 s ──► +60 s ──► every 10 min
                │
                ▼  for each open chat's room (as its puppet) and dispatch room (as the bot), a few at a time:
         GET /rooms/{room}/messages?dir=b  (pages of 50, back to ``since``)
                │
                ▼  events not yet in room_events: candidates (none: done until the next reading)
         a mark written in the bot's status room (matrix.bot.mark_push), then waited for through the push
                │  (not come within MARK_WAIT_S: the push is still catching up; the next reading looks again)
                ▼  candidates still not in room_events, oldest first: the push went past them
         room_events.add ──► the inbound pump, as if pushed (a pushed copy later is ignored: same event ID)

Why the mark: the homeserver pushes events in the order they were written, so an event written before the
mark that has not come by the time the mark has is one the push skipped. Without it, a reading made while
the push was merely behind (a backlog after a restart) took events it was about to bring as never pushed:
59 of 1,000 replies in one full kill loop.

Why: Synapse's appservice recoverer (which takes over while the bridge is down) can strand a transaction.
``_TransactionController.send`` reads the service as down and only stores a new transaction for the
recoverer, whose last look for unsent ones came a moment before; the recoverer then marks the service up
and ends, and the stranded transaction is sent only when a later send to us fails — to a healthy bridge,
never. bench/kill_loop.py lost an officer's reply that way in two full runs of two (one of 1,000 each
time; Synapse still held it after the run, with the bridge marked up). Transaction numbers cannot show
the gap (Synapse draws them from one sequence for all its appservices), and refusing a transaction to
start the recoverer again would open a window in which Synapse drops to-device messages (room keys), so
the bridge reads the rooms instead. A caught-up event comes late: after events that followed it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from ..background import WakeableLoop
from ..matrix.homeserver import HomeserverApi
from ..store import Store

log = logging.getLogger(__name__)

AFTER_START_S = (10.0, 60.0)     # when the recovery that follows a start has ended (it may strand one then)
EVERY_S = 600.0                  # and then now and then, for recoveries the bridge did not see (homeserver restarts)
LOOK_BACK_MS = 15 * 60 * 1000    # how far back the first reading goes: events stranded while it restarted
PAGE = 50
MAX_PAGES = 4                    # per room and reading: bounded, whatever the room holds
IN_FLIGHT = 4
MARK_WAIT_S = 120.0              # how long a reading waits for its mark to come through the push


def missing_events(page: list[dict[str, Any]], known: Callable[[str], bool], since_ms: int) -> list[dict[str, Any]]:
    """The events of a newest-first page that are not known and not older than ``since_ms``, oldest first."""
    fresh = [e for e in page if isinstance(e.get("event_id"), str) and isinstance(e.get("room_id"), str)
             and int(e.get("origin_server_ts") or 0) >= since_ms and not known(e["event_id"])]
    return list(reversed(fresh))


class RoomCatchup(WakeableLoop):
    def __init__(self, api: HomeserverApi, store: Store, rooms: Callable[[], list[tuple[str, str]]],
                 wake_inbound: Callable[[], None], mark: Callable[[], Awaitable[str | None]], *,
                 after_start: tuple[float, ...] = AFTER_START_S, every: float = EVERY_S,
                 mark_wait: float = MARK_WAIT_S) -> None:
        """``rooms``: (reader, room ID) of every room to read now: open chats' rooms as their puppets,
        dispatch rooms as the bot (officers' commands are as easily stranded as their words). ``mark``: writes
        an event the homeserver pushes to the bridge and returns its ID (None: it cannot now)."""
        super().__init__()
        self.api, self.store, self.rooms, self.wake_inbound, self.mark = api, store, rooms, wake_inbound, mark
        self.after_start, self.every, self.mark_wait = after_start, every, mark_wait
        self.caught_up = 0                       # events found missing so far (metrics, tests)

    async def _run(self) -> None:
        since = int(time.time() * 1000) - LOOK_BACK_MS
        waits = list(self.after_start)
        elapsed = 0.0
        while True:
            wait = (waits.pop(0) - elapsed) if waits else self.every
            await asyncio.sleep(max(0.0, wait))
            elapsed += max(0.0, wait)
            started = int(time.time() * 1000)
            try:
                if await self.read_rooms(since) is not None:
                    since = started - 60_000     # the next reading overlaps this one by a minute
            except Exception:                    # the next reading tries again
                log.exception("catch-up of the chats' rooms failed")

    async def read_rooms(self, since_ms: int) -> int | None:
        """Read every room's recent timeline; returns how many events the push went past (now queued), or None
        when that could not be told this time (the mark did not come through the push in time)."""
        slots = asyncio.Semaphore(IN_FLIGHT)
        candidates: list[dict[str, Any]] = []

        async def one(puppet: str, room_id: str) -> None:
            async with slots:
                try:
                    candidates.extend(await self._read_room(puppet, room_id, since_ms))
                except Exception as e:           # a room we left meanwhile, the homeserver busy: next time
                    log.info("catch-up of %s not done: %s", room_id, e)
        await asyncio.gather(*(one(reader, room_id) for reader, room_id in self.rooms()))
        if not candidates:
            return 0
        if not await self._push_passed():
            return None
        added = self._queue(candidates)
        if added:
            log.warning("%d event(s) the homeserver's push skipped were read back from the chats' rooms", added)
        return added

    async def read_back_room(self, reader: str, room_id: str, since_ms: int) -> int:
        """Read one room back now, when its handler knows the push went past something (a later event of the same
        sender's session came, an earlier one did not: chats/inbound.py); returns how many events were queued."""
        return self._queue(await self._read_room(reader, room_id, since_ms))

    def _queue(self, events: list[dict[str, Any]]) -> int:
        with self.store.db.transaction():
            added = [e for e in events if self.store.room_events.add(e)]
        for room_id in sorted({e["room_id"] for e in added}):
            log.warning("read back from %s, skipped by the homeserver's push: %s", room_id,
                        " ".join(e["event_id"] for e in added if e["room_id"] == room_id))
        if added:
            self.caught_up += len(added)
            self.wake_inbound()
        return len(added)

    async def _push_passed(self) -> bool:
        """Whether the push has brought a mark written now, i.e. everything written before it that it ever will."""
        mark = await self.mark()
        if mark is None:
            log.info("catch-up waits: no room to write its mark in yet")
            return False
        deadline = time.monotonic() + self.mark_wait
        while not self.store.room_events.known(mark):
            if time.monotonic() > deadline:
                log.info("catch-up waits: the homeserver's push has not brought its mark within %.0f s", self.mark_wait)
                return False
            await asyncio.sleep(0.2)
        return True

    async def _read_room(self, puppet: str, room_id: str, since_ms: int) -> list[dict[str, Any]]:
        """The room's recent events the bridge has not received, oldest first."""
        first_seen = self.store.room_events.first_seen_ms(room_id)
        if first_seen is None:
            return []                   # nothing pushed from it yet: the room is too new to have lost anything
        # Never before the bridge's first event of the room: what was said there before it joined (a dispatch
        # room an operator made) was never meant for it.
        since_ms = max(since_ms, first_seen)
        token: str | None = None
        missing: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            page, token = await self.api.room_messages(puppet, room_id, PAGE, token)
            missing = missing_events(page, self.store.room_events.known, since_ms) + missing
            if not token or not page or int(page[-1].get("origin_server_ts") or 0) < since_ms:
                break
        return missing
