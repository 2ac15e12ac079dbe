"""The ``audit_log`` table: one append-only hash chain of who did what (see ``bridge.records``)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .db import Database


@dataclass
class AuditEntry:
    idx: int
    ts: int
    action: str
    actor: str
    outcome: str
    target: str | None
    origin: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


def _entry(row: dict) -> AuditEntry:
    row["details"] = json.loads(row["details"])
    return AuditEntry(**row)


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at a moment, signed with the records key: ``idx``'s hash was ``hash``."""
    idx: int
    hash: str
    ts: int
    signature: str
    public_key: str


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_checkpoint(self, c: Checkpoint) -> None:
        self.db.execute("INSERT OR IGNORE INTO audit_checkpoints (idx, hash, ts, signature, public_key)"
                        " VALUES (?,?,?,?,?)", [c.idx, c.hash, c.ts, c.signature, c.public_key])

    def checkpoints(self) -> list[Checkpoint]:
        return [Checkpoint(**r) for r in self.db.rows("SELECT * FROM audit_checkpoints ORDER BY idx")]

    def hash_at(self, idx: int) -> str | None:
        row = self.db.row("SELECT hash FROM audit_log WHERE idx = ?", [idx])
        return row["hash"] if row else None

    def add(self, e: AuditEntry) -> None:
        self.db.execute("INSERT INTO audit_log (idx, ts, action, actor, outcome, target, origin, details,"
                        " prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        [e.idx, e.ts, e.action, e.actor, e.outcome, e.target, e.origin,
                         json.dumps(e.details, sort_keys=True), e.prev_hash, e.hash])

    def last(self) -> tuple[int, str] | None:
        row = self.db.row("SELECT idx, hash FROM audit_log ORDER BY idx DESC LIMIT 1")
        return (row["idx"], row["hash"]) if row else None

    def entries(self, *, target: str | None = None, action: str | None = None, since_idx: int = 0,
                limit: int | None = None) -> list[AuditEntry]:
        where, params = ["idx > ?"], [since_idx]
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        sql = "SELECT * FROM audit_log WHERE " + " AND ".join(where) + " ORDER BY idx"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_entry(r) for r in self.db.rows(sql, params)]

    def prune_before(self, ts: int) -> tuple[int, str] | None:
        """Delete entries older than ``ts``; (index, hash) of the newest one deleted, the survivors' anchor."""
        row = self.db.row("SELECT idx, hash FROM audit_log WHERE ts < ? ORDER BY idx DESC LIMIT 1", [ts])
        if row:
            self.db.execute("DELETE FROM audit_log WHERE idx <= ?", [row["idx"]])
            return row["idx"], row["hash"]
        return None
