"""The ``tickets`` table: offline messages left outside business hours, for officers to take later."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database


@dataclass
class Ticket:
    number: int
    agency: str
    topic: str
    message: str
    name: str | None
    contact: str | None
    created_ts: int
    event_id: str | None
    claimed_by: str | None
    claimed_ts: int | None


class Tickets:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, agency: str, topic: str, message: str, name: str | None, contact: str | None) -> Ticket:
        cur = self.db.execute("INSERT INTO tickets (agency, topic, message, name, contact, created_ts)"
                              " VALUES (?,?,?,?,?,?)", [agency, topic, message, name, contact, int(time.time() * 1000)])
        return self.get(cur.lastrowid)  # type: ignore[arg-type,return-value]

    def get(self, number: int) -> Ticket | None:
        row = self.db.row("SELECT * FROM tickets WHERE number = ?", [number])
        return Ticket(**row) if row else None

    def unposted(self) -> list[Ticket]:
        return [Ticket(**r) for r in self.db.rows("SELECT * FROM tickets WHERE event_id IS NULL ORDER BY number")]

    def by_event(self, event_id: str) -> Ticket | None:
        row = self.db.row("SELECT * FROM tickets WHERE event_id = ?", [event_id])
        return Ticket(**row) if row else None

    def set_event(self, number: int, event_id: str) -> None:
        self.db.execute("UPDATE tickets SET event_id = ? WHERE number = ?", [event_id, number])

    def claim(self, number: int, officer: str) -> bool:
        """Atomically take a ticket; False when someone else already has."""
        cur = self.db.execute("UPDATE tickets SET claimed_by = ?, claimed_ts = ? WHERE number = ? AND claimed_by IS NULL",
                              [officer, int(time.time() * 1000), number])
        return cur.rowcount == 1
