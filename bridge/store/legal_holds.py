"""The ``legal_holds`` table: chats that must not be purged or erased until the hold is lifted."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database


@dataclass
class Hold:
    chat_id: str
    reason: str | None
    actor: str
    ts: int


class LegalHolds:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, chat_id: str, reason: str | None, actor: str) -> bool:
        """False when the chat was already held (the first hold stays)."""
        cur = self.db.execute("INSERT OR IGNORE INTO legal_holds (chat_id, reason, actor, ts) VALUES (?,?,?,?)",
                              [chat_id, reason, actor, int(time.time() * 1000)])
        return cur.rowcount == 1

    def lift(self, chat_id: str) -> bool:
        return self.db.execute("DELETE FROM legal_holds WHERE chat_id = ?", [chat_id]).rowcount == 1

    def get(self, chat_id: str) -> Hold | None:
        row = self.db.row("SELECT * FROM legal_holds WHERE chat_id = ?", [chat_id])
        return Hold(**row) if row else None

    def all(self) -> list[Hold]:
        return [Hold(**r) for r in self.db.rows("SELECT * FROM legal_holds ORDER BY ts")]
