"""The ``room_events`` table: Matrix room events to handle, in the order the homeserver sent them.

The unique event_id drops events already seen (after a restart too).  Events
stay ``pending`` until handled; an encrypted event whose keys have not arrived
holds back the later events of its room so the citizen sees them in order.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Database

PENDING, DONE, FAILED, IGNORED = "pending", "done", "failed", "ignored"


@dataclass
class RoomEvent:
    stream: int
    event_id: str
    room_id: str
    event: dict[str, Any]
    first_failed_ts: int | None
    received_ts: int = 0                 # when the bridge received it (ms since the epoch)


class RoomEvents:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, event: dict[str, Any], handled: bool = False) -> bool:
        """Queue an event; False when it was seen before. ``handled``: one with nothing to do (the echo of
        our own message), kept only so that it is known, as done."""
        now = int(time.time() * 1000)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO room_events (event_id, room_id, type, sender, event, state, received_ts,"
            " processed_ts) VALUES (?,?,?,?,?,?,?,?)",
            [event["event_id"], event["room_id"], event.get("type", ""), event.get("sender"), json.dumps(event),
             DONE if handled else PENDING, now, now if handled else None])
        return cur.rowcount == 1

    def first_seen_ms(self, room_id: str) -> int | None:
        """When the bridge received its first event of this room (None: never)."""
        row = self.db.row("SELECT MIN(received_ts) AS ts FROM room_events WHERE room_id = ?", [room_id])
        return row["ts"] if row else None

    def known(self, event_id: str) -> bool:
        return self.db.row("SELECT 1 AS x FROM room_events WHERE event_id = ?", [event_id]) is not None

    def handled_encrypted(self, room_id: str) -> list[dict[str, Any]]:
        """The encrypted events of a room handled so far (any outcome), as received."""
        rows = self.db.rows("SELECT event FROM room_events WHERE state IN (?, ?, ?) AND room_id = ?"
                            " AND type = 'm.room.encrypted'", [DONE, FAILED, IGNORED, room_id])
        return [json.loads(r["event"]) for r in rows]

    def rooms_pending(self) -> list[str]:
        return [r["room_id"] for r in self.db.rows(
            "SELECT room_id, MIN(stream) AS s FROM room_events WHERE state = ? GROUP BY room_id ORDER BY s", [PENDING])]

    def pending(self, room_id: str, limit: int = 200) -> list[RoomEvent]:
        """A room's events waiting to be handled, in the homeserver's time order (receipt order for ties).

        Not simply in receipt order: Synapse can push an event late, after events written after it (a
        transaction its recoverer stranded, sent with the next recovery; appservice/catchup.py). Events still
        waiting together (a restart that found them unhandled) are then handled as they were written."""
        rows = self.db.rows("SELECT stream, event_id, room_id, event, first_failed_ts, received_ts FROM room_events"
                            " WHERE room_id = ? AND state = ?"
                            " ORDER BY json_extract(event, '$.origin_server_ts'), stream LIMIT ?",
                            [room_id, PENDING, limit])
        for r in rows:
            r["event"] = json.loads(r["event"])
        return [RoomEvent(**r) for r in rows]

    def finish(self, stream: int, state: str = DONE, error: str | None = None) -> None:
        self.db.execute("UPDATE room_events SET state = ?, error = ?, processed_ts = ? WHERE stream = ?",
                        [state, error[:1000] if error else None, int(time.time() * 1000), stream])

    def note_failure(self, stream: int) -> int:
        """Record the first time decryption failed; returns that time (ms)."""
        now = int(time.time() * 1000)
        self.db.execute("UPDATE room_events SET first_failed_ts = COALESCE(first_failed_ts, ?) WHERE stream = ?",
                        [now, stream])
        return self.db.row("SELECT first_failed_ts FROM room_events WHERE stream = ?", [stream])["first_failed_ts"]  # type: ignore[index]

    def forget_room(self, room_id: str) -> None:
        """Drop the stored bodies of a room's handled events (erasure/purge); IDs stay so replays still vanish."""
        self.db.execute("UPDATE room_events SET event = '{}', sender = NULL WHERE room_id = ? AND state != ?",
                        [room_id, PENDING])

    def count(self, state: str) -> int:
        return self.db.row("SELECT COUNT(*) AS n FROM room_events WHERE state = ?", [state])["n"]  # type: ignore[index]
