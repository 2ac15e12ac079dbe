"""The ``chats`` table: one row per citizen conversation."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .db import Database

WAITING, ACTIVE, CLOSED = "waiting", "active", "closed"


@dataclass(slots=True)       # slots: every open citizen connection holds its chat; a sixth of the size with no __dict__
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
    priority: int | None = 0          # 1: high (emergency or raised by an officer); the queue serves it first
    emergency: int | None = 0
    tags: str | None = None           # JSON list of labels
    claimed_by: str | None = None     # the officer who claimed or was assigned it (invited on claim)
    claimed_ts: int | None = None
    replied_ts: int | None = None     # the claiming officer's first message since the claim
    dispatch_event_id: str | None = None
    alerted_ts: int | None = None     # last unclaimed re-alert in the dispatch room
    idle_warned_ts: int | None = None
    preview: str | None = None        # start of the citizen's first message, for the dispatch notice
    read_seq: int | None = None       # an officer's client marked the conversation read up to this message
    training: str | None = None       # a practice chat's scenario ID (the bridge plays the citizen); None: real

    @property
    def label_list(self) -> list[str]:
        return json.loads(self.tags) if self.tags else []


class Chats:
    def __init__(self, db: Database, first_number: int = 1001) -> None:
        self.db = db
        self.first_number = first_number

    def create(self, chat_id: str, token_hash: str, topic: str, agency: str,
               display_name: str | None, language: str | None, training: str | None = None) -> Chat:
        with self.db.transaction():
            row = self.db.row("SELECT MAX(number) AS n FROM chats")
            number = max((row["n"] or 0) + 1, self.first_number)
            self.db.execute(
                "INSERT INTO chats (id, number, token_hash, topic, agency, display_name, language, state, created_ts,"
                " training) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [chat_id, number, token_hash, topic, agency, display_name, language, WAITING, _now(), training])
        return self.get(chat_id)  # type: ignore[return-value]

    def get(self, chat_id: str) -> Chat | None:
        row = self.db.row("SELECT * FROM chats WHERE id = ?", [chat_id])
        return Chat(**row) if row else None

    def by_token_hash(self, token_hash: str) -> Chat | None:
        row = self.db.row("SELECT * FROM chats WHERE token_hash = ?", [token_hash])
        return Chat(**row) if row else None

    def refresh(self, chat: Chat) -> Chat:
        """The chat as stored now. ``Chat`` values are snapshots taken when read: whoever acts on one after
        an await, or after a change of its own, reads it again here (the snapshot itself if the row is gone)."""
        return self.get(chat.id) or chat

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

    def expired(self, agency: str, closed_before_ms: int, training: bool = False) -> list[Chat]:
        """The agency's real (or, with ``training``, practice) chats closed before the given time (candidates
        for purging: the two kinds are kept for different lengths of time)."""
        kind = "IS NOT NULL" if training else "IS NULL"
        return [Chat(**r) for r in self.db.rows(
            f"SELECT * FROM chats WHERE agency = ? AND state = ? AND closed_ts < ? AND training {kind}"
            " ORDER BY closed_ts", [agency, CLOSED, closed_before_ms])]

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
        """Hand the chat to another agency (or one of its officers): back to waiting, no officer yet.

        To an agency it is queued there, unclaimed, with a new dispatch notice; to an officer it is theirs."""
        officer = to if to.startswith("@") else None
        self.db.execute("UPDATE chats SET agency = ?, state = ?, officer = NULL, transfer_to = ?, transferred_by = ?,"
                        " transfer_note = ?, claimed_by = ?, claimed_ts = ?, replied_ts = NULL, dispatch_event_id = NULL,"
                        " alerted_ts = NULL WHERE id = ?",
                        [agency, WAITING, to, by, note, officer, _now() if officer else None, chat_id])

    def waiting(self, agency: str) -> list[Chat]:
        """The agency's queue: unclaimed waiting chats, high priority first, then first come first served."""
        return [Chat(**r) for r in self.db.rows(
            "SELECT * FROM chats WHERE agency = ? AND state = ? AND claimed_by IS NULL"
            " ORDER BY COALESCE(priority, 0) DESC, number", [agency, WAITING])]

    def waiting_ids(self, agency: str) -> list[str]:
        """The IDs of ``waiting(agency)``, in its order, without reading whole rows (told of every queue move)."""
        return [r["id"] for r in self.db.rows(
            "SELECT id FROM chats WHERE agency = ? AND state = ? AND claimed_by IS NULL"
            " ORDER BY COALESCE(priority, 0) DESC, number", [agency, WAITING])]

    def count_waiting(self, agency: str) -> int:
        """How many chats are in the agency's queue (waiting, unclaimed): what its cap counts."""
        return self.db.row("SELECT COUNT(*) AS n FROM chats WHERE agency = ? AND state = ? AND claimed_by IS NULL",
                           [agency, WAITING])["n"]  # type: ignore[index]

    def by_dispatch_event(self, event_id: str) -> Chat | None:
        row = self.db.row("SELECT * FROM chats WHERE dispatch_event_id = ?", [event_id])
        return Chat(**row) if row else None

    def open_chats(self) -> list[Chat]:
        return [Chat(**r) for r in self.db.rows("SELECT * FROM chats WHERE state != ? ORDER BY number", [CLOSED])]

    def claim(self, chat_id: str, officer: str) -> bool:
        """Atomically give an unclaimed open chat to an officer; False when someone else was first."""
        cur = self.db.execute(
            "UPDATE chats SET claimed_by = ?, claimed_ts = ?, replied_ts = NULL WHERE id = ? AND claimed_by IS NULL"
            " AND state != ?", [officer, _now(), chat_id, CLOSED])
        return cur.rowcount == 1

    def unclaim(self, chat_id: str, officer: str) -> bool:
        """Back to the queue (the officer did not answer in time); False if it had moved on meanwhile."""
        cur = self.db.execute(
            "UPDATE chats SET claimed_by = NULL, claimed_ts = NULL, replied_ts = NULL, officer = NULL, state = ?,"
            " alerted_ts = NULL WHERE id = ? AND claimed_by = ? AND state != ?", [WAITING, chat_id, officer, CLOSED])
        return cur.rowcount == 1

    def held_by(self, officer: str, agency: str | None = None) -> int:
        """How many open chats an officer holds (the cap counts these)."""
        sql = "SELECT COUNT(*) AS n FROM chats WHERE claimed_by = ? AND state != ?"
        params: list = [officer, CLOSED]
        if agency:
            sql += " AND agency = ?"
            params.append(agency)
        return self.db.row(sql, params)["n"]  # type: ignore[index]

    def mark_read(self, chat_id: str, seq: int) -> bool:
        """An officer's client read up to message ``seq``; False if it had read that far already."""
        cur = self.db.execute("UPDATE chats SET read_seq = ? WHERE id = ? AND (read_seq IS NULL OR read_seq < ?)",
                              [seq, chat_id, seq])
        return cur.rowcount == 1

    def mark(self, chat_id: str, **values: object) -> None:
        """Set routing columns (priority, emergency, tags, replied_ts, dispatch_event_id, alerted_ts, …)."""
        allowed = {"priority", "emergency", "tags", "replied_ts", "dispatch_event_id", "alerted_ts",
                   "idle_warned_ts", "preview"}
        if not values or set(values) - allowed:
            raise ValueError(f"not a routing column: {sorted(set(values) - allowed)}")
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE chats SET {sets} WHERE id = ?", [*values.values(), chat_id])

    def recent_waits(self, topic: str, since_ms: int, limit: int = 20) -> list[int]:
        """How long recent answered chats on this topic waited for their first officer (ms)."""
        return [r["w"] for r in self.db.rows(
            "SELECT answered_ts - created_ts AS w FROM chats WHERE topic = ? AND answered_ts IS NOT NULL"
            " AND answered_ts >= ? AND training IS NULL ORDER BY answered_ts DESC LIMIT ?", [topic, since_ms, limit])]

    def open_in(self, agencies: list[str]) -> list[Chat]:
        """Every chat not closed of these agencies, oldest first (the console's live view)."""
        marks = ",".join("?" * len(agencies))
        return [Chat(**r) for r in self.db.rows(
            f"SELECT * FROM chats WHERE agency IN ({marks}) AND state != ? ORDER BY number", [*agencies, CLOSED])]

    def report_facts(self, agencies: list[str], since_ms: int, until_ms: int) -> list[dict]:
        """What reports need of each chat opened in [since, until): its times, first officer message,
        transfers and emergencies (from its record) and rating. The officer credited is the one who claimed
        it (or was assigned it), not whoever joined first (a supervisor looking in, say)."""
        marks = ",".join("?" * len(agencies))
        return self.db.rows(
            "SELECT c.id AS chat_id, c.agency, c.topic, COALESCE(c.claimed_by, c.officer) AS officer, c.created_ts, c.answered_ts, c.closed_ts,"
            " (SELECT MIN(m.ts) FROM messages m WHERE m.chat_id = c.id AND m.sender_kind = 'officer')"
            "   AS first_response_ts,"
            " (SELECT COUNT(*) FROM chat_records r WHERE r.chat_id = c.id AND r.kind = 'transferred') AS transfers,"
            " EXISTS (SELECT 1 FROM chat_records r WHERE r.chat_id = c.id AND r.kind = 'emergency') AS emergency,"
            " (SELECT f.rating FROM feedback f WHERE f.chat_id = c.id) AS rating"
            f" FROM chats c WHERE c.agency IN ({marks}) AND c.created_ts >= ? AND c.created_ts < ?"
            " AND c.training IS NULL"          # practice chats never count
            " ORDER BY c.created_ts", [*agencies, since_ms, until_ms])

    def counts(self) -> dict[tuple[str, str], int]:
        """How many chats each agency has in each state: {(agency, state): n}."""
        return {(r["agency"], r["state"]): r["n"] for r in self.db.rows(
            "SELECT agency, state, COUNT(*) AS n FROM chats GROUP BY agency, state")}


def _now() -> int:
    return int(time.time() * 1000)
