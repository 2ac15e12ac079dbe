"""SQLite connection, schema version and numbered migrations.

One connection, used from the event loop thread only; WAL so readers never
block the writer; ``synchronous=FULL`` so a commit is on disk before we ack a
visitor or answer the homeserver 200.  Each table has its own small module in
this package; this file only knows how to bring the schema up to date.
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils

from ..private_files import private_dir, private_file


def _v1(db: sqlite_utils.Database) -> None:
    db["chats"].create({
        "id": str, "number": int, "token_hash": str, "topic": str, "agency": str,
        "display_name": str, "language": str, "state": str, "puppet": str, "room_id": str,
        "officer": str, "created_ts": int, "ready_ts": int, "closed_ts": int,
    }, pk="id", not_null={"number", "token_hash", "state", "created_ts"})
    db["chats"].create_index(["number"], unique=True)
    db["chats"].create_index(["token_hash"], unique=True)
    db["chats"].create_index(["room_id"], unique=True)
    db["chats"].create_index(["state"])

    db["puppets"].create({
        "user_id": str, "device_id": str, "chat_id": str, "registered": int, "device_created": int,
        "cross_signed": int, "master_key": str, "next_batch": str, "created_ts": int,
    }, pk="user_id", not_null={"device_id", "created_ts"})
    db["puppets"].create_index(["chat_id"])

    db["messages"].create({
        "chat_id": str, "seq": int, "sender_kind": str, "kind": str, "sender": str, "sender_mxid": str,
        "body": str, "ts": int, "client_id": str, "event_id": str, "target_seq": int,
    }, pk=("chat_id", "seq"), not_null={"sender_kind", "kind", "body", "ts"})
    db["messages"].create_index(["chat_id", "client_id"], unique=True)
    db["messages"].create_index(["event_id"], unique=True)

    db["outbox"].create({
        "id": int, "chat_id": str, "txn_id": str, "event_type": str, "content": str, "message_seq": int,
        "state": str, "attempts": int, "event_id": str, "last_error": str, "created_ts": int, "sent_ts": int,
    }, pk="id", not_null={"chat_id", "txn_id", "event_type", "content", "state", "created_ts"})
    db["outbox"].create_index(["txn_id"], unique=True)
    db["outbox"].create_index(["state", "chat_id", "id"])

    db["as_transactions"].create({
        "txn_id": str, "body": str, "received_ts": int, "processed_ts": int,
    }, pk="txn_id", not_null={"body", "received_ts"})

    db["room_events"].create({
        "stream": int, "event_id": str, "room_id": str, "type": str, "sender": str, "event": str,
        "state": str, "error": str, "received_ts": int, "first_failed_ts": int, "processed_ts": int,
    }, pk="stream", not_null={"event_id", "room_id", "type", "event", "state", "received_ts"})
    db["room_events"].create_index(["event_id"], unique=True)
    db["room_events"].create_index(["state", "room_id", "stream"])


def _v2(db: sqlite_utils.Database) -> None:
    # A pool puppet's room, created ahead (encrypted, nobody invited) so a new chat only dresses it.
    db["puppets"].add_column("room_id", str)


def _v3(db: sqlite_utils.Database) -> None:
    db["settings"].create({"key": str, "value": str}, pk="key")


def _v4(db: sqlite_utils.Database) -> None:
    # When the first officer joined: the real waits behind the citizen's wait estimate.
    db["chats"].add_column("answered_ts", int)
    db["chats"].create_index(["topic", "answered_ts"])


def _v5(db: sqlite_utils.Database) -> None:
    db["feedback"].create({"chat_id": str, "rating": int, "comment": str, "ts": int}, pk="chat_id",
                          not_null={"rating", "ts"})


def _v6(db: sqlite_utils.Database) -> None:
    # The file behind an image/file message: where it is in the media repository and how to decrypt it.
    db["attachments"].create({"chat_id": str, "seq": int, "name": str, "mimetype": str, "size": int,
                              "sha256": str, "mxc": str, "file_info": str}, pk=("chat_id", "seq"),
                             not_null={"name", "mimetype", "mxc"})


def _v7(db: sqlite_utils.Database) -> None:
    # A system message's notice code and parameters (JSON), so the citizen's page can show it in the
    # citizen's language; the English body stays for transcripts and other clients.
    db["messages"].add_column("code", str)
    db["messages"].add_column("params", str)


def _v8(db: sqlite_utils.Database) -> None:
    # Records: each chat's hash-chained transcript, its signed seal, the audit chain, legal holds and
    # the redactions an erasure still owes the homeserver. Personal content sits outside the hashed
    # part (committed to by a salted hash), so erasing it leaves every chain verifiable.
    db["chat_records"].create({
        "chat_id": str, "idx": int, "ts": int, "kind": str, "actor": str, "details": str, "content": str,
        "salt": str, "content_hash": str, "prev_hash": str, "hash": str, "text": str, "erased_ts": int,
    }, pk=("chat_id", "idx"), not_null={"ts", "kind", "details", "prev_hash", "hash"})
    db["chat_records"].enable_fts(["text"], fts_version="FTS5", create_triggers=True)
    db["record_seals"].create({"chat_id": str, "last_idx": int, "final_hash": str, "signature": str,
                               "public_key": str, "ts": int}, pk="chat_id",
                              not_null={"last_idx", "final_hash", "signature", "public_key", "ts"})
    db["audit_log"].create({
        "idx": int, "ts": int, "action": str, "actor": str, "outcome": str, "target": str, "origin": str,
        "details": str, "prev_hash": str, "hash": str,
    }, pk="idx", not_null={"ts", "action", "actor", "outcome", "details", "prev_hash", "hash"})
    db["audit_log"].create_index(["target"])
    db["legal_holds"].create({"chat_id": str, "reason": str, "actor": str, "ts": int}, pk="chat_id",
                             not_null={"actor", "ts"})
    db["redactions"].create({"id": int, "chat_id": str, "room_id": str, "user_id": str, "event_id": str,
                             "attempts": int, "last_error": str}, pk="id",
                            not_null={"chat_id", "room_id", "user_id", "event_id"})


def _v9(db: sqlite_utils.Database) -> None:
    # Webhook deliveries owed to agencies' systems: written in the same commit as the chat change they tell of.
    db["webhook_outbox"].create({
        "id": int, "delivery_id": str, "agency": str, "url": str, "event": str, "payload": str, "state": str,
        "attempts": int, "next_ts": int, "last_error": str, "created_ts": int, "delivered_ts": int,
    }, pk="id", not_null={"delivery_id", "agency", "url", "event", "payload", "state", "next_ts", "created_ts"})
    db["webhook_outbox"].create_index(["delivery_id"], unique=True)
    db["webhook_outbox"].create_index(["state", "url", "id"])


def _v10(db: sqlite_utils.Database) -> None:
    # Supervisor console: one-time sign-in links and sessions, both kept only as hashes of their secrets.
    db["console_links"].create({"token_hash": str, "user_id": str, "created_ts": int, "expires_ts": int,
                                "used_ts": int}, pk="token_hash", not_null={"user_id", "created_ts", "expires_ts"})
    db["console_sessions"].create({"id_hash": str, "user_id": str, "created_ts": int, "last_seen_ts": int,
                                   "ended_ts": int}, pk="id_hash", not_null={"user_id", "created_ts", "last_seen_ts"})


def _v11(db: sqlite_utils.Database) -> None:
    # What an erasure owes the homeserver besides redacting events: "profile" = the puppet's display
    # name (the citizen's name) replaced by a neutral one and its member event redacted.
    db["redactions"].add_column("kind", str, not_null_default="event")


def _v12(db: sqlite_utils.Database) -> None:
    # A pending transfer (!transfer): to whom (agency id or officer user ID) and by whom, so the officer
    # who takes it over is given the conversation so far and the first officer leaves, even after a restart.
    db["chats"].add_column("transfer_to", str)
    db["chats"].add_column("transferred_by", str)
    db["chats"].add_column("transfer_note", str)


def _v13(db: sqlite_utils.Database) -> None:
    # Webhooks keep order per chat, not per URL: one chat's failing delivery must not hold up the others.
    db["webhook_outbox"].add_column("chat_id", str)
    db["webhook_outbox"].create_index(["state", "url", "chat_id", "id"])


def _v14(db: sqlite_utils.Database) -> None:
    # Routing: who claimed a chat and when, its priority and tags, its dispatch notice, the timers' marks.
    for column, kind in (("priority", int), ("emergency", int), ("tags", str), ("claimed_by", str),
                         ("claimed_ts", int), ("replied_ts", int), ("dispatch_event_id", str), ("alerted_ts", int),
                         ("idle_warned_ts", int), ("preview", str)):
        db["chats"].add_column(column, kind)
    db["chats"].create_index(["agency", "state", "claimed_by"])
    db["officers"].create({"agency": str, "user_id": str, "number": int, "available": int, "presence": str,
                           "last_assigned_ts": int}, pk=("agency", "user_id"), not_null={"number"})
    db["tickets"].create({"number": int, "agency": str, "topic": str, "message": str, "name": str, "contact": str,
                          "created_ts": int, "event_id": str, "claimed_by": str, "claimed_ts": int}, pk="number",
                         not_null={"agency", "topic", "message", "created_ts"})


def _v15(db: sqlite_utils.Database) -> None:
    # !block: a chat's source as a salted daily hash (never the address), the day salts, and the blocks.
    db["source_salts"].create({"day": int, "salt": str}, pk="day", not_null={"salt"})
    db["chat_sources"].create({"chat_id": str, "day": int, "hash": str}, pk="chat_id", not_null={"day", "hash"})
    db["source_blocks"].create({"id": int, "day": int, "hash": str, "chat_id": str, "actor": str, "reason": str,
                                "created_ts": int, "until_ts": int, "lifted_ts": int}, pk="id",
                               not_null={"day", "hash", "chat_id", "actor", "created_ts", "until_ts"})
    db["source_blocks"].create_index(["day", "hash"])
    db["source_blocks"].create_index(["chat_id"])


# Numbered upgrade steps: never edit a released step, append a new one.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11,
                                                             _v12, _v13, _v14, _v15]


class Database:
    """The bridge's store connection. Table modules take one of these."""

    def __init__(self, path: Path | str, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            # Owner-only whatever the umask: SQLite gives the -wal and -shm files the database file's mode.
            if not self.path.parent.exists():
                private_dir(self.path.parent)
            for file in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                if file == self.path or file.exists():     # an older run's WAL/SHM may be wider
                    private_file(file)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        if str(path) != ":memory:":
            self.db.enable_wal()
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("PRAGMA busy_timeout=10000")     # another process (the CLI) may hold the write lock
        self.db.execute("PRAGMA secure_delete=ON")       # erased and purged text is overwritten, not just unlinked
        self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    @property
    def version(self) -> int:
        if "schema_version" not in self.db.table_names():
            return 0
        row = self.db.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def migrate(self) -> None:
        current = self.version
        for number, step in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            with self.db.atomic():
                if "schema_version" not in self.db.table_names():
                    self.db["schema_version"].create({"version": int})
                step(self.db)
                self.db.execute("DELETE FROM schema_version")
                self.db.execute("INSERT INTO schema_version (version) VALUES (?)", [number])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all; a nested call is a savepoint of the outer one.

        The outermost takes the write lock at once (BEGIN IMMEDIATE): a command-line process writing
        records while the bridge runs then waits its turn instead of appending to a stale chain end.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def execute(self, sql: str, params: list | tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def rows(self, sql: str, params: list | tuple = ()) -> list[dict]:
        return list(self.db.query(sql, params))

    def row(self, sql: str, params: list | tuple = ()) -> dict | None:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database and empty it, so no old copy of erased rows stays in
        it (best effort: a reader in another process can keep part of it until it finishes)."""
        if str(self.path) != ":memory:":
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.db.close()
