"""The audit trail: one append-only hash chain of who did what, when, from where, with what outcome.

Pruning (after ``records.audit_retention_days``) deletes the oldest entries and remembers the last
deleted entry's index and hash as the anchor the survivors must link to, so the rest still verifies.

Hashes alone prove order and integrity only against someone who cannot recompute them. Every
``records.audit_checkpoint_minutes`` and at shutdown the chain's head (index, hash, time) is signed with
the records key and kept (``audit_checkpoints``); ``verify`` checks each signature with this bridge's key
and each signed hash against the entry now at that index, and names the first entry after the last
checkpoint that still holds. What it cannot prove: entries after the last checkpoint (up to an interval's
worth) are vouched for by the hashes only, and a thief of the records key could sign a rewrite.
"""
from __future__ import annotations

import json
import time
from typing import Any

from ..store import Store
from ..store.audit_log import AuditEntry, Checkpoint
from . import chain
from .chain import canonical
from .signing import Signer, check_signature
from .transcripts import now_ms

# What people and the bridge do to a chat that the audit log must show (who, what, when, from where, outcome):
# one list, so a new action without its audit entry is a failing test (tests/integration/test_audit_actions.py).
CHAT_ACTIONS = ("chat.claim", "chat.assign", "chat.transfer", "chat.requeue", "chat.note", "chat.canned",
                "chat.priority", "chat.tag", "chat.emergency", "chat.watch", "chat.practice", "chat.close", "chat.block", "chat.unblock",
                "chat.erase", "chat.purged", "chat.redaction", "chat.message_refused", "chat.member_refused",
                "legal_hold.set", "legal_hold.lifted")

ANCHOR_KEY = "records.audit_anchor"
DAY_MS = 24 * 3600 * 1000


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {"v": chain.VERSION, "index": e.idx, "ts": e.ts, "action": e.action, "actor": e.actor,
            "outcome": e.outcome, "target": e.target, "origin": e.origin, "details": e.details,
            "prev": e.prev_hash, "hash": e.hash}


def checkpoint_payload(idx: int, head_hash: str, ts: int) -> bytes:
    return canonical({"kind": "audit-checkpoint", "index": idx, "hash": head_hash, "ts": ts})


class AuditTrail:
    """The audit chain: appended in the caller's transaction, pruned past retention (an anchor keeps it
    verifiable), and its head signed now and then (``checkpoint``), so a chain rewritten with fresh hashes
    by someone without the records key is caught (``verify``)."""

    def __init__(self, store: Store, signer: Signer | None = None) -> None:
        self.store, self.signer = store, signer

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

    def checkpoint(self) -> Checkpoint | None:
        """Sign the chain's head, unless nothing was added since the last checkpoint."""
        last = self.store.audit_log.last()
        if last is None or self.signer is None:
            return None
        done = self.store.audit_log.checkpoints()
        if done and done[-1].idx >= last[0]:
            return None
        ts = now_ms()
        c = Checkpoint(last[0], last[1], ts, self.signer.sign(checkpoint_payload(last[0], last[1], ts)),
                       self.signer.public_key)
        with self.store.db.transaction():
            self.store.audit_log.add_checkpoint(c)
        return c

    def verify(self) -> chain.Problem | None:
        """The first thing wrong: a broken link of the chain, else a signed checkpoint the chain no longer
        matches (it was rewritten, hashes and all), named by the first entry after the last one that holds."""
        index, anchor = self._anchor()
        problem = chain.verify(self.entries(), chain.AUDIT_FIELDS, anchor=anchor, first_index=index + 1)
        return problem or self._check_checkpoints(index)

    def _check_checkpoints(self, pruned_to: int) -> chain.Problem | None:
        trusted = pruned_to                       # entries up to here are vouched for (or pruned)
        last = self.store.audit_log.last()
        for c in self.store.audit_log.checkpoints():
            if c.idx <= pruned_to:
                continue                          # its entries were pruned past retention
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(c.ts / 1000))
            if self.signer is not None and not (c.public_key == self.signer.public_key and check_signature(
                    self.signer.public_key, checkpoint_payload(c.idx, c.hash, c.ts), c.signature)):
                return chain.Problem(trusted + 1, "unverified",
                                     f"the checkpoint of entry {c.idx} dated {when} is not signed by this bridge's "
                                     f"records key; entries from {trusted + 1} on cannot be trusted")
            here = self.store.audit_log.hash_at(c.idx)
            if here is None:
                return chain.Problem(trusted + 1, "removed",
                                     f"entry {c.idx}, signed at {when}, is gone (the chain ends at "
                                     f"{last[0] if last else 0}); entries from {trusted + 1} on cannot be trusted")
            if here != c.hash:
                return chain.Problem(trusted + 1, "rewritten",
                                     f"entry {c.idx} no longer has the hash signed at {when}: the chain was "
                                     f"rewritten after entry {trusted}; entries from {trusted + 1} on cannot be trusted")
            trusted = c.idx
        return None

    def prune(self, retention_days: int) -> int:
        """Delete entries older than the retention; returns how many went."""
        with self.store.db.transaction():
            pruned = self.store.audit_log.prune_before(now_ms() - retention_days * DAY_MS)
            if pruned is None:
                return 0
            old_index = self._anchor()[0]
            self.store.settings.set(ANCHOR_KEY, json.dumps({"index": pruned[0], "hash": pruned[1]}))
            return pruned[0] - old_index
