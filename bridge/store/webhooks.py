"""The ``webhook_outbox`` table: signed notifications owed to agencies' systems, until delivered.

A row is written in the same commit as the chat change it tells of, so a crash can neither lose
a notification nor send one for a change that was rolled back.  One chat's rows to one URL go out
in order; different chats do not wait for each other.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Database

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass
class Delivery:
    id: int
    delivery_id: str
    agency: str
    url: str
    event: str
    payload: dict[str, Any]
    attempts: int
    next_ts: int
    created_ts: int


class WebhookOutbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, delivery_id: str, agency: str, url: str, chat_id: str, event: str, payload: dict[str, Any]) -> None:
        now = _now()
        self.db.execute(
            "INSERT INTO webhook_outbox (delivery_id, agency, url, chat_id, event, payload, state, attempts, next_ts,"
            " created_ts) VALUES (?,?,?,?,?,?,?,0,?,?)",
            [delivery_id, agency, url, chat_id, event, json.dumps(payload, sort_keys=True), PENDING, now, now])

    def heads(self, limit: int = 50) -> list[Delivery]:
        """The oldest pending delivery of each chat for each URL (its later ones wait behind it, in order),
        soonest due first."""
        rows = self.db.rows(
            "SELECT * FROM webhook_outbox WHERE id IN (SELECT MIN(id) FROM webhook_outbox WHERE state = ?"
            " GROUP BY url, chat_id) ORDER BY next_ts, id LIMIT ?", [PENDING, limit])
        return [_delivery(r) for r in rows]

    def delivered(self, row_id: int) -> None:
        self.db.execute("UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, delivered_ts = ?,"
                        " last_error = NULL WHERE id = ?", [DELIVERED, _now(), row_id])

    def retry_later(self, row_id: int, next_ts: int, error: str) -> None:
        self.db.execute("UPDATE webhook_outbox SET attempts = attempts + 1, next_ts = ?, last_error = ? WHERE id = ?",
                        [next_ts, error[:500], row_id])

    def give_up(self, row_id: int, error: str) -> None:
        self.db.execute("UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                        [FAILED, error[:500], row_id])

    def state(self, delivery_id: str) -> dict[str, Any] | None:
        return self.db.row("SELECT state, attempts, last_error, delivered_ts FROM webhook_outbox"
                           " WHERE delivery_id = ?", [delivery_id])

    def pending_count(self) -> int:
        return self.db.row("SELECT COUNT(*) AS n FROM webhook_outbox WHERE state = ?", [PENDING])["n"]  # type: ignore[index]


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(row["id"], row["delivery_id"], row["agency"], row["url"], row["event"], json.loads(row["payload"]),
                    row["attempts"], row["next_ts"], row["created_ts"])


def _now() -> int:
    return int(time.time() * 1000)
