"""Retention, legal hold and erasure of chats — each change with its chat entry and audit entry, in one commit.

* Purge: a closed chat past its agency's retention is deleted from the bridge's store entirely
  (its record and seal too); a chat under legal hold never is.
* Legal hold: set or lifted by a supervisor (chat room, console) or the CLI; recorded in the chat's
  chain and the audit trail.
* Erasure (the citizen with the chat token, or a supervisor): a closed chat not under hold loses its
  personal data — message text, names, attachments, the record's content (its salted hashes stay, so
  the chain and seal still verify) — and the puppet's own events in the room are queued for redaction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Config
from ..store import Store
from ..store.chats import CLOSED, Chat
from ..store.redactions import PROFILE
from .writer import Records
from .transcripts import now_ms

log = logging.getLogger(__name__)
DAY_MS = 24 * 3600 * 1000


class Refused(Exception):
    """An erasure or purge that must not happen; ``error`` is the API code (legal_hold, chat_open)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error, self.message = error, message


@dataclass
class Erased:
    chat_id: str
    redactions: int
    already: bool = False


class Retention:
    def __init__(self, config: Config, store: Store, records: Records) -> None:
        self.config, self.store, self.records = config, store, records

    # ---- legal hold ------------------------------------------------------------------------------
    def hold(self, chat: Chat, reason: str | None, actor: str, origin: str) -> bool:
        """Place a legal hold; False when the chat was already held (nothing changes)."""
        with self.store.db.transaction():
            placed = self.store.legal_holds.set(chat.id, reason, actor)
            if placed:
                self.records.chat_event(chat.id, "legal_hold.set", actor, reason=reason)
            self.records.audit("legal_hold.set", actor, "ok" if placed else "unchanged", target=chat.id,
                               origin=origin, reason=reason)
        return placed

    def lift(self, chat: Chat, actor: str, origin: str) -> bool:
        with self.store.db.transaction():
            lifted = self.store.legal_holds.lift(chat.id)
            if lifted:
                self.records.chat_event(chat.id, "legal_hold.lifted", actor)
            self.records.audit("legal_hold.lifted", actor, "ok" if lifted else "unchanged", target=chat.id,
                               origin=origin)
        return lifted

    # ---- erasure ---------------------------------------------------------------------------------
    def erase(self, chat: Chat, actor: str, origin: str, source: str | None = None) -> Erased:
        """Erase a closed chat's personal data, or raise ``Refused`` (and record the refusal: repeats from
        one ``source``, the client address, as one entry per window with their count)."""
        chat = self.store.chats.refresh(chat)
        hold = self.store.legal_holds.get(chat.id)
        if hold or chat.state != CLOSED:
            error, message = (("legal_hold", "This chat is under legal hold and cannot be erased now.") if hold
                              else ("chat_open", "End the chat before asking for its erasure."))
            self.records.refused("chat.erase", actor, target=chat.id, origin=origin, source=source, reason=error)
            raise Refused(error, message)
        if self.store.chat_records.has_kind(chat.id, "erased"):
            return Erased(chat.id, 0, already=True)
        with self.store.db.transaction():
            events = self.store.outbox.sent_event_ids(chat.id) if chat.room_id and chat.puppet else []
            for event_id in events:
                self.store.redactions.add(chat.id, chat.room_id, chat.puppet, event_id)  # type: ignore[arg-type]
            if chat.display_name and chat.room_id and chat.puppet:
                self.store.redactions.add(chat.id, chat.room_id, chat.puppet, "", kind=PROFILE)
            self.store.messages.erase_chat(chat.id)
            self.store.attachments.delete_chat(chat.id)
            self.store.outbox.delete_chat(chat.id)
            self.store.feedback.erase_comment(chat.id)
            self.store.chats.erase_personal(chat.id)
            if chat.room_id:
                self.store.room_events.forget_room(chat.room_id)
            if chat.puppet:           # its keys and device go once its redactions are sent (matrix/puppets.py)
                self.store.puppets.retiring(chat.puppet, chat.room_id)
            self.store.chat_records.erase_content(chat.id)
            self.records.chat_event(chat.id, "erased", actor, redactions=len(events))
            self.records.audit("chat.erase", actor, target=chat.id, origin=origin, redactions=len(events))
        self._scrub()
        log.info("chat %s erased by %s (%d events to redact)", chat.number, actor, len(events))
        return Erased(chat.id, len(events))

    # ---- purge -----------------------------------------------------------------------------------
    def purge_expired(self, actor: str = "bridge", origin: str = "schedule") -> list[str]:
        """Delete closed chats past their agency's retention (practice chats past the training retention),
        never a held one; returns the purged IDs."""
        purged = []
        for agency in self.config.agencies:
            for training, days in ((False, self.config.retention_days(agency.id)),
                                   (True, self.config.get("records.training_retention_days"))):
                for chat in self.store.chats.expired(agency.id, now_ms() - days * DAY_MS, training=training):
                    if self.store.legal_holds.get(chat.id):
                        continue
                    self._purge(chat, actor, origin, days)
                    purged.append(chat.id)
        if purged:
            self._scrub()
        return purged

    def _scrub(self) -> None:
        """After deleting text: no copy left in the search index's old segments or the write-ahead log
        (secure_delete already overwrites the freed pages)."""
        self.store.chat_records.compact_index()
        self.store.db.checkpoint()

    def _purge(self, chat: Chat, actor: str, origin: str, retention_days: int) -> None:
        with self.store.db.transaction():
            for table in (self.store.messages, self.store.attachments, self.store.outbox, self.store.feedback,
                          self.store.chat_records, self.store.record_seals, self.store.redactions):
                table.delete_chat(chat.id)
            if chat.room_id:
                self.store.room_events.forget_room(chat.room_id)
            if chat.puppet:           # its device, keys and row go too (matrix/puppets.py)
                self.store.puppets.retiring(chat.puppet, chat.room_id)
            self.store.chats.delete(chat.id)
            self.records.audit("chat.purged", actor, target=chat.id, origin=origin, number=chat.number,
                               agency=chat.agency, closed_ts=chat.closed_ts, retention_days=retention_days)
        log.info("chat %s purged after %d days' retention", chat.number, retention_days)
