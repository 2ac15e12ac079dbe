"""The ``puppets`` table: visitor Matrix users, their devices and set-up progress.

A puppet is prepared in steps (registered, device created, cross-signed); each
step is recorded so a crash part-way resumes instead of starting over.  Puppets
with no ``chat_id`` are the warm pool.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Database

KEYS_KEPT = 20          # room keys kept per client and room: rotations are rare (joins, new devices, restarts)


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
    retire_ts: int | None = None

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

    def retiring(self, user_id: str, room_id: str | None) -> None:
        """Its chat is over for good (purged, or erased): to be retired (matrix/puppets.py). ``room_id``: the chat's
        room, which the retirement leaves (a puppet made for its chat was never told it)."""
        self.db.execute("UPDATE puppets SET retire_ts = ?, room_id = COALESCE(?, room_id) WHERE user_id = ?",
                        [int(time.time() * 1000), room_id, user_id])

    def retirable(self, limit: int = 1000) -> list[Puppet]:
        """Puppets marked ``retiring`` whose chat owes no redaction any more (they are made as the puppet),
        oldest first; at most ``limit`` (a sweep's worth: about a minute of homeserver requests)."""
        return [Puppet(**r) for r in self.db.rows(
            "SELECT * FROM puppets WHERE retire_ts IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM redactions WHERE redactions.chat_id = puppets.chat_id) ORDER BY retire_ts LIMIT ?",
            [limit])]

    def delete(self, user_id: str) -> None:
        """The puppet's row, the room keys it created and the Olm messages it took, in one commit."""
        with self.db.transaction():
            self.db.execute("DELETE FROM puppet_room_keys WHERE user_id = ?", [user_id])
            self.db.execute("DELETE FROM puppet_olm_taken WHERE user_id = ?", [user_id])
            self.db.execute("DELETE FROM puppets WHERE user_id = ?", [user_id])

    def assign(self, user_id: str, chat_id: str) -> None:
        self.db.execute("UPDATE puppets SET chat_id = ? WHERE user_id = ?", [chat_id, user_id])

    def mark(self, user_id: str, step: str, value: str | int = 1) -> None:
        if step not in ("registered", "device_created", "cross_signed", "master_key", "next_batch", "room_id"):
            raise ValueError(step)
        self.db.execute(f"UPDATE puppets SET {step} = ? WHERE user_id = ?", [value, user_id])

    # ---- the room keys each puppet (or the bot) created ------------------------------------------
    # The m.room_key content (index 0) of every Megolm session a client of the bridge started in a room,
    # so that an officer who joins after messages were sent can be given them, even across a restart
    # (nio keeps its outbound sessions in memory only). Key material, but for messages whose plain text
    # this database's records hold anyway.

    def remember_room_key(self, user_id: str, room_id: str, content: dict[str, Any], keep: int = KEYS_KEPT) -> None:
        """Note a new room key (idempotent); only the newest ``keep`` of a room are kept."""
        with self.db.transaction():
            self.db.execute("INSERT OR IGNORE INTO puppet_room_keys (user_id, room_id, session_id, content, created_ts)"
                            " VALUES (?,?,?,?,?)", [user_id, room_id, content["session_id"], json.dumps(content),
                                                    int(time.time() * 1000)])
            self.db.execute("DELETE FROM puppet_room_keys WHERE user_id = ? AND room_id = ? AND rowid NOT IN "
                            "(SELECT rowid FROM puppet_room_keys WHERE user_id = ? AND room_id = ? "
                            " ORDER BY rowid DESC LIMIT ?)", [user_id, room_id, user_id, room_id, keep])

    def room_keys(self, user_id: str, room_id: str) -> list[dict[str, Any]]:
        """The room keys this client created in the room, oldest first."""
        return [json.loads(r["content"]) for r in self.db.rows(
            "SELECT content FROM puppet_room_keys WHERE user_id = ? AND room_id = ? ORDER BY rowid", [user_id, room_id])]

    # ---- Olm messages a device has taken ----------------------------------------------------------
    # A digest of every Olm-encrypted to-device message nio has handled for a device, so that one handed over
    # again is passed over (why it comes again, and what decrypting it twice costs: ``Crypto._receive``).

    def olm_taken(self, user_id: str, digests: list[str]) -> set[str]:
        """Which of these the device has handled already."""
        if not digests:
            return set()
        marks = ",".join("?" * len(digests))
        return {r["digest"] for r in self.db.rows(
            f"SELECT digest FROM puppet_olm_taken WHERE user_id = ? AND digest IN ({marks})", [user_id, *digests])}

    def note_olm_taken(self, user_id: str, digests: list[str]) -> None:
        """Noted once nio has handled them (and stored what they carried): a crash before this feeds them again."""
        if digests:
            now = int(time.time() * 1000)
            with self.db.transaction():
                for digest in digests:
                    self.db.execute("INSERT OR IGNORE INTO puppet_olm_taken (user_id, digest, created_ts) "
                                    "VALUES (?,?,?)", [user_id, digest, now])

    def forget_olm_taken_before(self, ts_ms: int) -> int:
        """Drop what the inbox can no longer hand over again (older than its keeping); returns how many."""
        return self.db.execute("DELETE FROM puppet_olm_taken WHERE created_ts < ?", [ts_ms]).rowcount

    def forget_room_keys(self, user_id: str) -> None:
        self.db.execute("DELETE FROM puppet_room_keys WHERE user_id = ?", [user_id])

    def forget_room_keys_before(self, ts_ms: int) -> int:
        """Drop keys older than this (the bot's, whose rooms outlive any chat); returns how many."""
        return self.db.execute("DELETE FROM puppet_room_keys WHERE created_ts < ?", [ts_ms]).rowcount
