"""Posts each agency's daily summary into its supervisors' room, on schedule, once per day.

The last day posted is remembered in the store per agency, so a restart never posts twice and a
bridge that was down at the summary time posts the missed summary when it starts.  A failed post
is retried on the next pass (every few minutes) and logged.
"""
from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable

from ..background import WakeableLoop
from ..journal import Journal
from ..config import Config
from ..store import Store
from . import summary
from .report import build, facts

log = logging.getLogger(__name__)

LAST_POSTED = "summary.last_posted."        # + agency id → YYYY-MM-DD
RETRY_SECONDS = 300.0

Say = Callable[[str, str], Awaitable[None]]   # (room ID, text)


class SummaryPoster(WakeableLoop):
    def __init__(self, config: Config, store: Store, journal: Journal, say: Say,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.config, self.store, self.journal, self.say, self.clock = config, store, journal, say, clock
        self.rooms: dict[str, str] = config.get("reports.summary_rooms")
        self.at: str = config.get("reports.summary_time")

    async def _run(self) -> None:
        while True:
            failed = await self.post_due()
            wait = summary.seconds_until_next(int(self.clock() * 1000), self.at)
            await self._sleep(min(wait, RETRY_SECONDS) if failed else wait + 1)

    async def post_due(self) -> bool:
        """Post every summary that is due; True if one failed (and will be tried again)."""
        failed = False
        now = int(self.clock() * 1000)
        for agency in self.config.agencies:
            room = self.rooms.get(agency.id)
            day = summary.due_day(now, self.at, self.store.settings.get(LAST_POSTED + agency.id))
            if room is None or day is None:
                continue
            since = summary.day_start(now) - summary.DAY_MS
            report = build(facts(self.store.chats.report_facts([agency.id], since, since + summary.DAY_MS)),
                           since, since + summary.DAY_MS)
            body = summary.text(agency.name, agency.id, day, report.overall, report.hours,
                                self.config.get("web.public_url"))
            try:
                await self.say(room, body)
            except Exception as e:
                log.warning("daily summary for %s not posted in %s (will retry): %s", agency.id, room, e)
                self.journal.audit("report.summary_posted", "bridge", "failed", target=agency.id, origin=room,
                                   day=day, error=str(e)[:200])
                failed = True
                continue
            with self.store.db.transaction():
                self.store.settings.set(LAST_POSTED + agency.id, day)
                self.journal.audit("report.summary_posted", "bridge", target=agency.id, origin=room, day=day)
        return failed
