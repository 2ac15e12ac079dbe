"""The ``feedback`` table: the citizen's rating (1-5) and optional comment, one per chat."""
from __future__ import annotations

import time

from .db import Database


class Feedback:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, chat_id: str, rating: int, comment: str | None) -> bool:
        """Store it; False when this chat already has feedback (it is given once)."""
        cur = self.db.execute("INSERT OR IGNORE INTO feedback (chat_id, rating, comment, ts) VALUES (?,?,?,?)",
                              [chat_id, rating, comment, int(time.time() * 1000)])
        return cur.rowcount == 1

    def erase_comment(self, chat_id: str) -> None:
        self.db.execute("UPDATE feedback SET comment = NULL WHERE chat_id = ?", [chat_id])

    def delete_chat(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM feedback WHERE chat_id = ?", [chat_id])

    def get(self, chat_id: str) -> dict | None:
        return self.db.row("SELECT rating, comment, ts FROM feedback WHERE chat_id = ?", [chat_id])

    def recent(self, agencies: list[str], limit: int = 200) -> list[dict]:
        """The newest feedback on these agencies' chats, with the chat's number and officer."""
        marks = ",".join("?" * len(agencies))
        return self.db.rows(
            "SELECT f.chat_id, c.number, c.agency, c.officer, f.rating, f.comment, f.ts FROM feedback f"
            f" JOIN chats c ON c.id = f.chat_id WHERE c.agency IN ({marks}) ORDER BY f.ts DESC LIMIT ?",
            [*agencies, limit])
