"""The ``chats`` table: one row per citizen conversation."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database

WAITING, ACTIVE, CLOSED = "waiting", "active", "closed"


@dataclass
class Chat:
    id: str
    number: int
    token_hash: str
    topic: str
    agency: str
    display_name: str | None
    language: str | None
    state: str
    puppet: str | None
    room_id: str | None
    officer: str | None
    created_ts: int
    ready_ts: int | None
    closed_ts: int | None
    answered_ts: int | None = None
    transfer_to: str | None = None       # agency id or officer user ID of a transfer not yet taken over
    transferred_by: str | None = None
    transfer_note: str | None = None


class Chats:
    def __init__(self, db: Database, first_number: int = 1001) -> None:
        self.db = db
        self.first_number = first_number

    def create(self, chat_id: str, token_hash: str, topic: str, agency: str,
               display_name: str | None, language: str | None) -> Chat:
        with self.db.transaction():
            row = self.db.row("SELECT MAX(number) AS n FROM chats")
            number = max((row["n"] or 0) + 1, self.first_number)
            self.db.execute(
                "INSERT INTO chats (id, number, token_hash, topic, agency, display_name, language, state, created_ts)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [chat_id, number, token_hash, topic, agency, display_name, language, WAITING, _now()])
        return self.get(chat_id)  # type: ignore[return-value]

    def get(self, chat_id: str) -> Chat | None:
        row = self.db.row("SELECT * FROM chats WHERE id = ?", [chat_id])
        return Chat(**row) if row else None

    def by_token_hash(self, token_hash: str) -> Chat | None:
        row = self.db.row("SELECT * FROM chats WHERE token_hash = ?", [token_hash])
        return Chat(**row) if row else None

    def by_number(self, number: int) -> Chat | None:
        row = self.db.row("SELECT * FROM chats WHERE number = ?", [number])
        return Chat(**row) if row else None

    def by_room(self, room_id: str) -> Chat | None:
        row = self.db.row("SELECT * FROM chats WHERE room_id = ?", [room_id])
        return Chat(**row) if row else None

    def without_room(self) -> list[Chat]:
        return [Chat(**r) for r in self.db.rows("SELECT * FROM chats WHERE room_id IS NULL ORDER BY number")]

    def open_with_room(self) -> list[Chat]:
        return [Chat(**r) for r in self.db.rows(
            "SELECT * FROM chats WHERE room_id IS NOT NULL AND state != ? ORDER BY number", [CLOSED])]

    def expired(self, agency: str, closed_before_ms: int) -> list[Chat]:
        """The agency's chats closed before the given time (candidates for purging)."""
        return [Chat(**r) for r in self.db.rows(
            "SELECT * FROM chats WHERE agency = ? AND state = ? AND closed_ts < ? ORDER BY closed_ts",
            [agency, CLOSED, closed_before_ms])]

    def erase_personal(self, chat_id: str) -> None:
        """The citizen's name and free text officers wrote about the chat (a transfer note)."""
        self.db.execute("UPDATE chats SET display_name = NULL, transfer_note = NULL WHERE id = ?", [chat_id])

    def delete(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM chats WHERE id = ?", [chat_id])

    def set_puppet(self, chat_id: str, puppet: str) -> None:
        self.db.execute("UPDATE chats SET puppet = ? WHERE id = ?", [puppet, chat_id])

    def set_room(self, chat_id: str, room_id: str) -> None:
        self.db.execute("UPDATE chats SET room_id = ?, ready_ts = ? WHERE id = ?", [room_id, _now(), chat_id])

    def set_state(self, chat_id: str, state: str, officer: str | None = None) -> None:
        closed = _now() if state == CLOSED else None
        answered = _now() if state == ACTIVE else None
        self.db.execute(
            "UPDATE chats SET state = ?, officer = COALESCE(?, officer), closed_ts = COALESCE(?, closed_ts),"
            " answered_ts = COALESCE(answered_ts, ?) WHERE id = ?", [state, officer, closed, answered, chat_id])

    def set_transfer(self, chat_id: str, agency: str, to: str, by: str, note: str | None) -> None:
        """Hand the chat to another agency (or one of its officers): back to waiting, no officer yet."""
        self.db.execute("UPDATE chats SET agency = ?, state = ?, officer = NULL, transfer_to = ?, transferred_by = ?,"
                        " transfer_note = ? WHERE id = ?", [agency, WAITING, to, by, note, chat_id])

    def waiting(self, agency: str) -> list[Chat]:
        """The agency's queue, first come first served."""
        return [Chat(**r) for r in self.db.rows(
            "SELECT * FROM chats WHERE agency = ? AND state = ? ORDER BY number", [agency, WAITING])]

    def recent_waits(self, topic: str, since_ms: int, limit: int = 20) -> list[int]:
        """How long recent answered chats on this topic waited for their first officer (ms)."""
        return [r["w"] for r in self.db.rows(
            "SELECT answered_ts - created_ts AS w FROM chats WHERE topic = ? AND answered_ts IS NOT NULL"
            " AND answered_ts >= ? ORDER BY answered_ts DESC LIMIT ?", [topic, since_ms, limit])]

    def open_in(self, agencies: list[str]) -> list[Chat]:
        """Every chat not closed of these agencies, oldest first (the console's live view)."""
        marks = ",".join("?" * len(agencies))
        return [Chat(**r) for r in self.db.rows(
            f"SELECT * FROM chats WHERE agency IN ({marks}) AND state != ? ORDER BY number", [*agencies, CLOSED])]

    def report_facts(self, agencies: list[str], since_ms: int, until_ms: int) -> list[dict]:
        """What reports need of each chat opened in [since, until): its times, first officer message,
        transfers and emergencies (from its record) and rating."""
        marks = ",".join("?" * len(agencies))
        return self.db.rows(
            "SELECT c.id AS chat_id, c.agency, c.topic, c.officer, c.created_ts, c.answered_ts, c.closed_ts,"
            " (SELECT MIN(m.ts) FROM messages m WHERE m.chat_id = c.id AND m.sender_kind = 'officer')"
            "   AS first_response_ts,"
            " (SELECT COUNT(*) FROM chat_records r WHERE r.chat_id = c.id AND r.kind = 'transferred') AS transfers,"
            " EXISTS (SELECT 1 FROM chat_records r WHERE r.chat_id = c.id AND r.kind = 'emergency') AS emergency,"
            " (SELECT f.rating FROM feedback f WHERE f.chat_id = c.id) AS rating"
            f" FROM chats c WHERE c.agency IN ({marks}) AND c.created_ts >= ? AND c.created_ts < ?"
            " ORDER BY c.created_ts", [*agencies, since_ms, until_ms])

    def counts(self) -> dict[tuple[str, str], int]:
        """How many chats each agency has in each state: {(agency, state): n}."""
        return {(r["agency"], r["state"]): r["n"] for r in self.db.rows(
            "SELECT agency, state, COUNT(*) AS n FROM chats GROUP BY agency, state")}


def _now() -> int:
    return int(time.time() * 1000)
