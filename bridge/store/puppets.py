"""The ``puppets`` table: visitor Matrix users, their devices and set-up progress.

A puppet is prepared in steps (registered, device created, cross-signed); each
step is recorded so a crash part-way resumes instead of starting over.  Puppets
with no ``chat_id`` are the warm pool.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database


@dataclass
class Puppet:
    user_id: str
    device_id: str
    chat_id: str | None
    registered: int | None
    device_created: int | None
    cross_signed: int | None
    master_key: str | None
    next_batch: str | None
    created_ts: int
    room_id: str | None = None

    @property
    def ready(self) -> bool:
        return bool(self.registered and self.device_created and self.cross_signed)


class Puppets:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, user_id: str, device_id: str, chat_id: str | None = None) -> Puppet:
        self.db.execute("INSERT INTO puppets (user_id, device_id, chat_id, created_ts) VALUES (?,?,?,?)",
                        [user_id, device_id, chat_id, int(time.time() * 1000)])
        return self.get(user_id)  # type: ignore[return-value]

    def get(self, user_id: str) -> Puppet | None:
        row = self.db.row("SELECT * FROM puppets WHERE user_id = ?", [user_id])
        return Puppet(**row) if row else None

    def exists(self, user_id: str) -> bool:
        return self.db.row("SELECT 1 AS x FROM puppets WHERE user_id = ?", [user_id]) is not None

    def for_chat(self, chat_id: str) -> Puppet | None:
        row = self.db.row("SELECT * FROM puppets WHERE chat_id = ?", [chat_id])
        return Puppet(**row) if row else None

    def pool(self) -> list[Puppet]:
        return [Puppet(**r) for r in self.db.rows("SELECT * FROM puppets WHERE chat_id IS NULL ORDER BY created_ts")]

    def claim_ready(self, chat_id: str) -> Puppet | None:
        """Give a prepared pool puppet to a chat (atomically), or None when the pool is empty."""
        with self.db.transaction():
            row = self.db.row("SELECT user_id FROM puppets WHERE chat_id IS NULL AND registered = 1 AND "
                              "device_created = 1 AND cross_signed = 1 AND room_id IS NOT NULL "
                              "ORDER BY created_ts LIMIT 1")
            if not row:
                return None
            self.db.execute("UPDATE puppets SET chat_id = ? WHERE user_id = ?", [chat_id, row["user_id"]])
        return self.get(row["user_id"])

    def assign(self, user_id: str, chat_id: str) -> None:
        self.db.execute("UPDATE puppets SET chat_id = ? WHERE user_id = ?", [chat_id, user_id])

    def mark(self, user_id: str, step: str, value: str | int = 1) -> None:
        if step not in ("registered", "device_created", "cross_signed", "master_key", "next_batch", "room_id"):
            raise ValueError(step)
        self.db.execute(f"UPDATE puppets SET {step} = ? WHERE user_id = ?", [value, user_id])
