"""Where chats come from, without keeping where they come from: salted daily hashes, and blocks on them.

A citizen's address is never stored.  Each UTC day has its own random salt (``source_salts``); a chat
keeps ``HMAC-SHA256(salt of its day, address)`` (``chat_sources``), so a copy of the database cannot
be searched for an address without the salts, and once a day's salt is deleted its hashes match
nothing and link nothing.

A block (``!block`` in a chat room) is stored as that chat's (day, hash).  Because the address is gone,
a block cannot be re-hashed under later days' salts; instead a day's salt is kept exactly as long as a
chat of that day may still be blocked (``KEEP_DAYS``) or an active block needs it, and a new chat's
address is hashed under each salt that active blocks use (a handful at most: one per day of blocks).
When the last block of a day ends, that day's salt goes at the next rotation, and with it any way to
link the day's chats to an address.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from .db import Database

DAY_MS = 86_400_000
KEEP_DAYS = 2          # today's and yesterday's salts: a chat that began before midnight can still be blocked


@dataclass(frozen=True)
class Block:
    id: int
    chat_id: str
    actor: str
    reason: str | None
    created_ts: int
    until_ts: int


def _day(now_ms: int) -> int:
    return now_ms // DAY_MS


class Sources:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _salt(self, day: int) -> str | None:
        row = self.db.row("SELECT salt FROM source_salts WHERE day = ?", [day])
        return row["salt"] if row else None

    def _today_salt(self, now_ms: int) -> tuple[int, str]:
        """Today's salt, made on first use; older salts no longer needed are deleted (the daily rotation)."""
        day = _day(now_ms)
        salt = self._salt(day)
        if salt is None:
            with self.db.transaction():
                self.db.execute("INSERT OR IGNORE INTO source_salts (day, salt) VALUES (?, ?)",
                                [day, secrets.token_hex(32)])
                self._rotate(now_ms)
            salt = self._salt(day)
        assert salt is not None
        return day, salt

    def _rotate(self, now_ms: int) -> None:
        keep_from = _day(now_ms) - KEEP_DAYS + 1
        self.db.execute("DELETE FROM source_salts WHERE day < ? AND day NOT IN (SELECT day FROM source_blocks "
                        "WHERE until_ts > ? AND lifted_ts IS NULL)", [keep_from, now_ms])
        self.db.execute("DELETE FROM chat_sources WHERE day NOT IN (SELECT day FROM source_salts)")

    @staticmethod
    def _hash(salt: str, address: str) -> str:
        return hmac.new(bytes.fromhex(salt), address.encode(), hashlib.sha256).hexdigest()

    def remember(self, chat_id: str, address: str, now_ms: int | None = None) -> None:
        """Keep the salted hash of the address a chat came from (never the address)."""
        if not address:
            return
        day, salt = self._today_salt(now_ms if now_ms is not None else int(time.time() * 1000))
        self.db.execute("INSERT OR REPLACE INTO chat_sources (chat_id, day, hash) VALUES (?, ?, ?)",
                        [chat_id, day, self._hash(salt, address)])

    def key(self, address: str, now_ms: int | None = None) -> str:
        """Today's salted hash of an address: the same source gives the same key all day, and nothing the
        next (how repeated refusals are counted per source without keeping the address)."""
        _, salt = self._today_salt(now_ms if now_ms is not None else int(time.time() * 1000))
        return self._hash(salt, address)

    def block(self, chat_id: str, actor: str, reason: str | None, seconds: int,
              now_ms: int | None = None) -> Block | None:
        """Refuse new chats from this chat's source for ``seconds``; None when its source is not known
        (an address was not recorded, or that day's salt has rotated away)."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        row = self.db.row("SELECT day, hash FROM chat_sources WHERE chat_id = ? AND day IN "
                          "(SELECT day FROM source_salts)", [chat_id])
        if row is None:
            return None
        cur = self.db.execute("INSERT INTO source_blocks (day, hash, chat_id, actor, reason, created_ts, until_ts) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [row["day"], row["hash"], chat_id, actor, reason, now, now + seconds * 1000])
        return Block(cur.lastrowid, chat_id, actor, reason, now, now + seconds * 1000)

    def unblock(self, chat_id: str, now_ms: int | None = None) -> int:
        """Lift the active blocks made from this chat; how many."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return self.db.execute("UPDATE source_blocks SET lifted_ts = ? WHERE chat_id = ? AND lifted_ts IS NULL "
                               "AND until_ts > ?", [now, chat_id, now]).rowcount

    def active_block(self, chat_id: str, now_ms: int | None = None) -> Block | None:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        row = self.db.row("SELECT id, chat_id, actor, reason, created_ts, until_ts FROM source_blocks "
                          "WHERE chat_id = ? AND lifted_ts IS NULL AND until_ts > ? ORDER BY until_ts DESC",
                          [chat_id, now])
        return Block(**row) if row else None

    def blocked(self, address: str, now_ms: int | None = None) -> Block | None:
        """The active block on this address, if any: hashed under each salt active blocks use."""
        if not address:
            return None
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        for r in self.db.rows("SELECT DISTINCT b.day, s.salt FROM source_blocks b JOIN source_salts s "
                              "ON s.day = b.day WHERE b.until_ts > ? AND b.lifted_ts IS NULL", [now]):
            row = self.db.row("SELECT id, chat_id, actor, reason, created_ts, until_ts FROM source_blocks "
                              "WHERE day = ? AND hash = ? AND until_ts > ? AND lifted_ts IS NULL "
                              "ORDER BY until_ts DESC", [r["day"], self._hash(r["salt"], address), now])
            if row:
                return Block(**row)
        return None
