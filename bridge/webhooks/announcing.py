"""A Journal that also owes the agency's systems a webhook for the chat events they care about.

It wraps whichever Journal the bridge uses (records) and forwards everything to it; for queued,
claimed, assigned, transferred and closed it adds a delivery row to ``webhook_outbox``.  Callers
already write journal entries inside the transaction of the change, so the delivery is committed
with the change or not at all, and sending happens later, off the chat path (``sender.py``).
"""
from __future__ import annotations

import secrets
import time
from typing import Any, Callable

from ..journal import Journal
from ..config import Webhook
from ..store import Store

EVENTS = {"queued": "chat.queued", "claimed": "chat.claimed", "assigned": "chat.assigned",
          "transferred": "chat.transferred", "closed": "chat.closed"}
# Details that may carry what a citizen wrote or who they are: never sent to another system.
PERSONAL = frozenset({"body", "display_name", "text", "comment", "language", "name", "note"})
AGENCY_DETAILS = ("agency", "from_agency", "to_agency", "to")      # "to": an agency, or an officer


class AnnouncingJournal:
    """A Journal (bridge/journal.py) that also owes the webhooks of the entries agencies subscribe to, in
    the same commit; it offers exactly the Journal's three methods, nothing else of what it wraps."""

    def __init__(self, inner: Journal, store: Store, webhooks: list[Webhook], wake: Callable[[], None]) -> None:
        self.inner, self.store, self.webhooks, self.wake = inner, store, webhooks, wake

    def chat_event(self, chat_id: str, kind: str, actor: str | None, **details: Any) -> None:
        self.inner.chat_event(chat_id, kind, actor, **details)
        event = EVENTS.get(kind)
        if event and self.webhooks:
            self._announce(chat_id, event, actor, details)

    def audit(self, action: str, actor: str, outcome: str = "ok", *, target: str | None = None,
              origin: str | None = None, **details: Any) -> None:
        self.inner.audit(action, actor, outcome, target=target, origin=origin, **details)

    def refused(self, action: str, actor: str, outcome: str = "refused", *, source: str | None,
                target: str | None = None, origin: str | None = None, reason: str, **details: Any) -> None:
        self.inner.refused(action, actor, outcome, source=source, target=target, origin=origin, reason=reason,
                           **details)

    def _announce(self, chat_id: str, event: str, actor: str | None, details: dict[str, Any]) -> None:
        chat = self.store.chats.get(chat_id)
        if chat is None or chat.training:          # a practice chat is nothing for an agency's systems
            return
        agencies = {chat.agency} | {details[k] for k in AGENCY_DETAILS if isinstance(details.get(k), str)}
        body = {
            "event": event, "ts": int(time.time() * 1000), "actor": actor,
            "chat": {"id": chat.id, "number": chat.number, "agency": chat.agency, "topic": chat.topic,
                     "state": chat.state, "room_id": chat.room_id, "officer": chat.officer,
                     "created_ts": chat.created_ts, "answered_ts": chat.answered_ts, "closed_ts": chat.closed_ts},
            "details": {k: v for k, v in details.items()
                        if k not in PERSONAL and isinstance(v, (str, int, float, bool, type(None)))},
        }
        added = False
        for hook in self.webhooks:
            if hook.agency in agencies:
                delivery_id = "precinct-" + secrets.token_hex(12)
                self.store.webhooks.add(delivery_id, hook.agency, hook.url, chat.id, event,
                                        {"id": delivery_id, "agency": hook.agency, **body})
                added = True
        if added:
            self.wake()         # runs after the caller's commit: the sender only reads when we yield
