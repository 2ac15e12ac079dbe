"""The one interface through which chats/, matrix/ and web/ leave a record of what happened.

Two kinds of entry, both meant for a court, a supervisor or a trainer:

* ``chat_event`` — something in one chat's record (message either way, internal note, system event
  such as queued / claimed / assigned / transferred / closed, attachment with its SHA-256). The
  implementation (``bridge.records``) chains them per chat and signs the chain when the chat closes.
* ``audit`` — who did what, when, from where and with what outcome (claims, transfers, refusals,
  console sign-ins, exports, erasures, configuration loaded …); one append-only chain for the bridge.
* ``refused`` — an audit entry for a refusal one source may repeat many times (a flood): the first
  from a source is recorded at once, its repeats as one entry per ``records.refusal_window_seconds``
  with their count (``bridge/records/refusals.py``).

Callers write inside the same store transaction as the change they record, so a record is never
missing for a change that happened, nor present for one that did not.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Journal(Protocol):
    def chat_event(self, chat_id: str, kind: str, actor: str | None, **details: Any) -> None:
        """``kind``: message.visitor, message.officer, note, attachment, queued, claimed, assigned,
        transferred, closed, priority, tag, emergency … ``actor``: a Matrix user ID, "visitor" or None."""

    def audit(self, action: str, actor: str, outcome: str = "ok", *, target: str | None = None,
              origin: str | None = None, **details: Any) -> None:
        """``outcome``: "ok", "refused" or "failed"; ``origin``: IP address, room ID or "cli"."""

    def refused(self, action: str, actor: str, outcome: str = "refused", *, source: str | None,
                target: str | None = None, origin: str | None = None, reason: str, **details: Any) -> None:
        """A refusal a source may repeat: ``source`` is the client address (None: no address, e.g. the CLI);
        it is kept only as a salted daily hash. ``reason`` tells refusals of one action apart."""


class LogJournal:
    """Writes entries to the log only: what runs until ``bridge.records`` is wired in."""

    def chat_event(self, chat_id: str, kind: str, actor: str | None, **details: Any) -> None:
        log.info("chat %s: %s by %s %s", chat_id, kind, actor, details)

    def audit(self, action: str, actor: str, outcome: str = "ok", *, target: str | None = None,
              origin: str | None = None, **details: Any) -> None:
        log.info("audit: %s by %s from %s on %s: %s %s", action, actor, origin, target, outcome, details)

    def refused(self, action: str, actor: str, outcome: str = "refused", *, source: str | None,
                target: str | None = None, origin: str | None = None, reason: str, **details: Any) -> None:
        self.audit(action, actor, outcome, target=target, origin=origin, reason=reason, **details)
