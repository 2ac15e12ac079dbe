"""Catch-up: the recent timeline of each open chat's room, read back after a start, for events the
homeserver's push never brought.

    start ──► +10 s ──► +60 s ──► every 10 min
                │
                ▼  for each open chat's room (as its puppet) and dispatch room (as the bot), a few at a time:
         GET /rooms/{room}/messages?dir=b  (pages of 50, back to ``since``)
                │
                ▼  events not yet in room_events, oldest first
         room_events.add ──► the inbound pump, as if pushed (a pushed copy later is ignored: same event ID)

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
from typing import Any, Callable

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


def missing_events(page: list[dict[str, Any]], known: Callable[[str], bool], since_ms: int) -> list[dict[str, Any]]:
    """The events of a newest-first page that are not known and not older than ``since_ms``, oldest first."""
    fresh = [e for e in page if isinstance(e.get("event_id"), str) and isinstance(e.get("room_id"), str)
             and int(e.get("origin_server_ts") or 0) >= since_ms and not known(e["event_id"])]
    return list(reversed(fresh))


class RoomCatchup(WakeableLoop):
    def __init__(self, api: HomeserverApi, store: Store, rooms: Callable[[], list[tuple[str, str]]],
                 wake_inbound: Callable[[], None], *, after_start: tuple[float, ...] = AFTER_START_S,
                 every: float = EVERY_S) -> None:
        """``rooms``: (reader, room ID) of every room to read now: open chats' rooms as their puppets,
        dispatch rooms as the bot (officers' commands are as easily stranded as their words)."""
        super().__init__()
        self.api, self.store, self.rooms, self.wake_inbound = api, store, rooms, wake_inbound
        self.after_start, self.every = after_start, every
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
                await self.read_rooms(since)
            except Exception:                    # the next reading tries again
                log.exception("catch-up of the chats' rooms failed")
            since = started - 60_000             # the next reading overlaps this one by a minute

    async def read_rooms(self, since_ms: int) -> int:
        """Read every room's recent timeline; returns how many events were missing (and are now queued)."""
        slots = asyncio.Semaphore(IN_FLIGHT)
        found = 0

        async def one(puppet: str, room_id: str) -> None:
            nonlocal found
            async with slots:
                try:
                    found += await self._read_room(puppet, room_id, since_ms)
                except Exception as e:           # a room we left meanwhile, the homeserver busy: next time
                    log.info("catch-up of %s not done: %s", room_id, e)
        await asyncio.gather(*(one(reader, room_id) for reader, room_id in self.rooms()))
        if found:
            self.caught_up += found
            log.warning("%d event(s) the homeserver never pushed were read back from the chats' rooms", found)
            self.wake_inbound()
        return found

    async def _read_room(self, puppet: str, room_id: str, since_ms: int) -> int:
        first_seen = self.store.room_events.first_seen_ms(room_id)
        if first_seen is None:
            return 0                    # nothing pushed from it yet: the room is too new to have lost anything
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
        with self.store.db.transaction():
            added = [e["event_id"] for e in missing if self.store.room_events.add(e)]
        if added:
            log.warning("read back from %s, never pushed by the homeserver: %s", room_id, " ".join(added))
        return len(added)
