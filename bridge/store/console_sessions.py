"""The ``console_sessions`` table: signed-in supervisors (only the hash of each session cookie)."""
from __future__ import annotations

from .db import Database


class ConsoleSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, id_hash: str, user_id: str, now_ms: int) -> None:
        self.db.execute("INSERT INTO console_sessions (id_hash, user_id, created_ts, last_seen_ts) VALUES (?,?,?,?)",
                        [id_hash, user_id, now_ms, now_ms])

    def touch(self, id_hash: str, now_ms: int, idle_ms: int) -> str | None:
        """The session's user if it is open and was used within ``idle_ms``; the use restarts the idle time."""
        cur = self.db.execute("UPDATE console_sessions SET last_seen_ts = ? WHERE id_hash = ? AND ended_ts IS NULL"
                              " AND last_seen_ts >= ?", [now_ms, id_hash, now_ms - idle_ms])
        if cur.rowcount != 1:
            return None
        return self.db.row("SELECT user_id FROM console_sessions WHERE id_hash = ?", [id_hash])["user_id"]  # type: ignore[index]

    def get(self, id_hash: str) -> dict | None:
        return self.db.row("SELECT user_id, created_ts, last_seen_ts, ended_ts FROM console_sessions"
                           " WHERE id_hash = ?", [id_hash])

    def end(self, id_hash: str, now_ms: int) -> bool:
        return self.db.execute("UPDATE console_sessions SET ended_ts = ? WHERE id_hash = ? AND ended_ts IS NULL",
                               [now_ms, id_hash]).rowcount == 1
