"""The audit trail: one append-only hash chain of who did what, when, from where, with what outcome.

Pruning (after ``records.audit_retention_days``) deletes the oldest entries and remembers the last
deleted entry's index and hash as the anchor the survivors must link to, so the rest still verifies.
"""
from __future__ import annotations

import json
from typing import Any

from ..store import Store
from ..store.audit_log import AuditEntry
from . import chain
from .transcripts import now_ms

# What people and the bridge do to a chat that the audit log must show (who, what, when, from where, outcome):
# one list, so a new action without its audit entry is a failing test (tests/integration/test_audit_actions.py).
CHAT_ACTIONS = ("chat.claim", "chat.assign", "chat.transfer", "chat.requeue", "chat.note", "chat.canned",
                "chat.priority", "chat.tag", "chat.emergency", "chat.close", "chat.block", "chat.unblock",
                "chat.erase", "chat.purged", "chat.redaction", "chat.message_refused", "chat.member_refused",
                "legal_hold.set", "legal_hold.lifted")

ANCHOR_KEY = "records.audit_anchor"
DAY_MS = 24 * 3600 * 1000


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {"v": chain.VERSION, "index": e.idx, "ts": e.ts, "action": e.action, "actor": e.actor,
            "outcome": e.outcome, "target": e.target, "origin": e.origin, "details": e.details,
            "prev": e.prev_hash, "hash": e.hash}


class AuditTrail:
    def __init__(self, store: Store) -> None:
        self.store = store

    def append(self, action: str, actor: str, outcome: str, target: str | None, origin: str | None,
               details: dict[str, Any]) -> AuditEntry:
        details = {k: v for k, v in details.items() if v is not None}
        with self.store.db.transaction():
            last = self.store.audit_log.last()
            if last is None:
                anchor = self._anchor()
                index, prev = anchor[0] + 1, anchor[1]
            else:
                index, prev = last[0] + 1, last[1]
            entry = {"v": chain.VERSION, "index": index, "ts": now_ms(), "action": action, "actor": actor,
                     "outcome": outcome, "target": target, "origin": origin, "details": details, "prev": prev}
            e = AuditEntry(index, entry["ts"], action, actor, outcome, target, origin, details, prev,
                           chain.entry_hash(entry, chain.AUDIT_FIELDS))
            self.store.audit_log.add(e)
        return e

    def _anchor(self) -> tuple[int, str]:
        raw = self.store.settings.get(ANCHOR_KEY)
        if not raw:
            return 0, chain.GENESIS
        data = json.loads(raw)
        return int(data["index"]), str(data["hash"])

    def entries(self, **filters: Any) -> list[dict[str, Any]]:
        return [entry_dict(e) for e in self.store.audit_log.entries(**filters)]

    def verify(self) -> chain.Problem | None:
        index, anchor = self._anchor()
        return chain.verify(self.entries(), chain.AUDIT_FIELDS, anchor=anchor, first_index=index + 1)

    def prune(self, retention_days: int) -> int:
        """Delete entries older than the retention; returns how many went."""
        with self.store.db.transaction():
            pruned = self.store.audit_log.prune_before(now_ms() - retention_days * DAY_MS)
            if pruned is None:
                return 0
            old_index = self._anchor()[0]
            self.store.settings.set(ANCHOR_KEY, json.dumps({"index": pruned[0], "hash": pruned[1]}))
            return pruned[0] - old_index
