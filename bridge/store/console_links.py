"""The ``console_links`` table: one-time supervisor sign-in links (only the hash of each token)."""
from __future__ import annotations

from .db import Database

UNKNOWN, USED, EXPIRED = "unknown", "used", "expired"


class ConsoleLinks:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, token_hash: str, user_id: str, now_ms: int, expires_ms: int) -> None:
        self.db.execute("INSERT INTO console_links (token_hash, user_id, created_ts, expires_ts) VALUES (?,?,?,?)",
                        [token_hash, user_id, now_ms, expires_ms])

    def use(self, token_hash: str, now_ms: int) -> str | None:
        """Spend the link: its user ID if it was unused and unexpired, else None. One statement, so two
        requests racing with the same link cannot both win."""
        cur = self.db.execute("UPDATE console_links SET used_ts = ? WHERE token_hash = ? AND used_ts IS NULL"
                              " AND expires_ts > ?", [now_ms, token_hash, now_ms])
        if cur.rowcount != 1:
            return None
        return self.db.row("SELECT user_id FROM console_links WHERE token_hash = ?", [token_hash])["user_id"]  # type: ignore[index]

    def why_not(self, token_hash: str) -> tuple[str, str | None]:
        """Why a link could not be used: (unknown|used|expired, its user ID if known)."""
        row = self.db.row("SELECT user_id, used_ts FROM console_links WHERE token_hash = ?", [token_hash])
        if row is None:
            return UNKNOWN, None
        return (USED if row["used_ts"] is not None else EXPIRED), row["user_id"]

    def forget_before(self, ts_ms: int) -> int:
        return self.db.execute("DELETE FROM console_links WHERE expires_ts < ?", [ts_ms]).rowcount
