"""The records' background work inside the bridge: redactions owed by erasures, and the retention schedule.

Redactions are stored before the erasure is acknowledged and sent here with a fixed transaction ID
each, so a crash or homeserver outage only delays them.  Windows of repeated refusals
(``records/refusals.py``) are written here as they end. Every ``records.purge_interval_minutes``
the keeper purges expired chats (then the puppets of purged and erased chats are retired: device, room
and keys gone), prunes the audit trail past its retention and drops the bodies of appservice transactions
handled more than a day ago (they hold raw events, names included).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from ..background import WakeableLoop
from ..config import Config
from ..matrix.homeserver import HomeserverApi, MatrixError
from ..store import Store
from ..store.redactions import PROFILE, Redaction
from .writer import Records
from .retention import DAY_MS, Retention

log = logging.getLogger(__name__)
GIVE_UP_AFTER = 8
REDACTION_REASON = "Erased at the citizen's request"
ERASED_NAME = "Visitor (erased)"


class RecordsKeeper(WakeableLoop):
    def __init__(self, config: Config, store: Store, api: HomeserverApi, records: Records,
                 retention: Retention, retire_puppets: Callable[[], Awaitable[int]] | None = None) -> None:
        """``retire_puppets``: after each purge, the Matrix side of purged and erased chats goes too (their
        puppets' devices, rooms and stores: matrix/puppets.py ``PuppetManager.retire``)."""
        self.config, self.store, self.api, self.records, self.retention = config, store, api, records, retention
        self.retire_puppets = retire_puppets
        self.interval_s = config.get("records.purge_interval_minutes") * 60
        self.checkpoint_s = config.get("records.audit_checkpoint_minutes") * 60
        self._next_purge = 0.0
        self._next_checkpoint = time.monotonic() + self.checkpoint_s
        super().__init__()

    async def _run(self) -> None:
        delay = 5.0
        while True:
            try:
                clean = await self.redact_pending()
                if time.monotonic() >= self._next_purge:
                    self.housekeeping()
                    self._next_purge = time.monotonic() + self.interval_s
                    if self.retire_puppets:
                        await self.retire_puppets()
                self.records.refusals.flush()
                if time.monotonic() >= self._next_checkpoint:
                    self.records.trail.checkpoint()
                    self._next_checkpoint = time.monotonic() + self.checkpoint_s
                delay = 30.0 if clean else min(delay * 2, 300.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("records upkeep failed; retrying")
            due = self.records.refusals.next_due()
            checkpoint_in = max(0.5, self._next_checkpoint - time.monotonic())
            await self._sleep(min(delay if due is None else max(0.5, min(delay, due)), checkpoint_in))

    def housekeeping(self) -> None:
        purged = self.retention.purge_expired()
        pruned = self.records.trail.prune(self.config.get("records.audit_retention_days"))
        forgotten = self.store.transactions.forget_processed(int(time.time() * 1000) - DAY_MS)
        if purged or pruned or forgotten:
            log.info("records upkeep: %d chats purged, %d audit entries pruned, %d transaction bodies dropped",
                     len(purged), pruned, forgotten)

    async def _forget_name(self, item: Redaction) -> None:
        """The citizen's name lives in the puppet's profile and member event: replace it, redact the old event."""
        state = await self.api.room_state(item.user_id, item.room_id)
        member = next((e for e in state if e.get("type") == "m.room.member" and e.get("state_key") == item.user_id),
                      None)
        if member and (member.get("content") or {}).get("displayname") != ERASED_NAME:
            await self.api.set_display_name(item.user_id, ERASED_NAME)
            await self.api.redact(item.user_id, item.room_id, member["event_id"], f"precinct.erase.{item.id}",
                                  REDACTION_REASON)

    async def redact_pending(self) -> bool:
        """Send owed redactions; True when none is left failing."""
        clean = True
        for item in self.store.redactions.pending():
            try:
                if item.kind == PROFILE:
                    await self._forget_name(item)
                else:
                    await self.api.redact(item.user_id, item.room_id, item.event_id, f"precinct.erase.{item.id}",
                                          REDACTION_REASON)
                self.store.redactions.done(item.id)
            except (MatrixError, OSError, asyncio.TimeoutError) as e:
                clean = False
                if item.attempts + 1 >= GIVE_UP_AFTER:
                    with self.store.db.transaction():
                        self.store.redactions.done(item.id)
                        self.records.audit("chat.redaction", "bridge", "failed", target=item.chat_id,
                                           origin=item.room_id, event_id=item.event_id, error=str(e)[:200])
                    log.warning("redaction of %s abandoned after %d attempts: %s", item.event_id, GIVE_UP_AFTER, e)
                else:
                    self.store.redactions.failed(item.id, str(e))
        return clean
