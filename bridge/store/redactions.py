"""The ``redactions`` table: what an erasure still owes the Matrix room, sent by the chat's puppet.

``kind`` "event": redact ``event_id``; "profile": replace the puppet's display name (the citizen's
name) with a neutral one and redact the member event that carried it (``event_id`` unused).
"""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database

EVENT, PROFILE = "event", "profile"


@dataclass
class Redaction:
    id: int
    chat_id: str
    room_id: str
    user_id: str
    event_id: str
    attempts: int
    kind: str = EVENT


class Redactions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, chat_id: str, room_id: str, user_id: str, event_id: str, kind: str = EVENT) -> None:
        self.db.execute("INSERT INTO redactions (chat_id, room_id, user_id, event_id, attempts, kind)"
                        " VALUES (?,?,?,?,0,?)", [chat_id, room_id, user_id, event_id, kind])

    def pending(self, limit: int = 100) -> list[Redaction]:
        return [Redaction(**r) for r in self.db.rows(
            "SELECT id, chat_id, room_id, user_id, event_id, attempts, kind FROM redactions ORDER BY id LIMIT ?",
            [limit])]

    def done(self, item_id: int) -> None:
        self.db.execute("DELETE FROM redactions WHERE id = ?", [item_id])

    def failed(self, item_id: int, error: str) -> None:
        self.db.execute("UPDATE redactions SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                        [error[:500], item_id])

    def delete_chat(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM redactions WHERE chat_id = ?", [chat_id])

    def count(self, chat_id: str | None = None) -> int:
        if chat_id is None:
            return self.db.row("SELECT COUNT(*) AS n FROM redactions")["n"]  # type: ignore[index]
        return self.db.row("SELECT COUNT(*) AS n FROM redactions WHERE chat_id = ?", [chat_id])["n"]  # type: ignore[index]
