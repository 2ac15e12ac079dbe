"""The ``outbox`` table: Matrix sends not yet confirmed, with their transaction IDs.

The txn_id is written before the first attempt, so a send repeated after a
crash reuses it and the homeserver returns the original event instead of
creating a second one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Database

PENDING, SENT = "pending", "sent"


@dataclass
class OutboxItem:
    id: int
    chat_id: str
    txn_id: str
    event_type: str
    content: dict[str, Any]
    message_seq: int | None
    attempts: int


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, chat_id: str, txn_id: str, event_type: str, content: dict[str, Any],
            message_seq: int | None = None) -> None:
        self.db.execute(
            "INSERT INTO outbox (chat_id, txn_id, event_type, content, message_seq, state, attempts, created_ts)"
            " VALUES (?,?,?,?,?,?,0,?)",
            [chat_id, txn_id, event_type, json.dumps(content), message_seq, PENDING, int(time.time() * 1000)])

    def chats_pending(self) -> list[str]:
        return [r["chat_id"] for r in self.db.rows("SELECT DISTINCT chat_id FROM outbox WHERE state = ?", [PENDING])]

    def has_pending(self, chat_id: str) -> bool:
        return self.db.row("SELECT 1 AS x FROM outbox WHERE chat_id = ? AND state = ? LIMIT 1",
                           [chat_id, PENDING]) is not None

    def next_for(self, chat_id: str) -> OutboxItem | None:
        row = self.db.row("SELECT id, chat_id, txn_id, event_type, content, message_seq, attempts FROM outbox"
                          " WHERE chat_id = ? AND state = ? ORDER BY id LIMIT 1", [chat_id, PENDING])
        if not row:
            return None
        row["content"] = json.loads(row["content"])
        return OutboxItem(**row)

    def mark_sent(self, item_id: int, event_id: str) -> None:
        self.db.execute("UPDATE outbox SET state = ?, event_id = ?, sent_ts = ? WHERE id = ?",
                        [SENT, event_id, int(time.time() * 1000), item_id])

    def mark_attempt_failed(self, item_id: int, error: str) -> None:
        self.db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", [error[:500], item_id])

    def sent_event_ids(self, chat_id: str) -> list[str]:
        """What the chat's puppet sent into its room (the events an erasure redacts)."""
        return [r["event_id"] for r in self.db.rows(
            "SELECT event_id FROM outbox WHERE chat_id = ? AND state = ? AND event_id IS NOT NULL ORDER BY id",
            [chat_id, SENT])]

    def delete_chat(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM outbox WHERE chat_id = ?", [chat_id])

    def pending_count(self) -> int:
        return self.db.row("SELECT COUNT(*) AS n FROM outbox WHERE state = ?", [PENDING])["n"]  # type: ignore[index]
