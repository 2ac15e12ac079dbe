"""SQLite connection, schema version and numbered migrations, and the durability barrier.

One connection, used from the event loop thread only, in WAL mode so readers never block the writer.
Each table has its own small module in this package; this file brings the schema up to date and owns
the one rule every acknowledgement relies on: **commit, then ``await db.durable()``, then acknowledge.**

Why a barrier and not ``synchronous=FULL``
------------------------------------------
With FULL every COMMIT fsyncs the write-ahead log before it returns: on the event loop, so one
citizen's flood of messages made everyone else (and ``/health``) wait for the disk, commit after commit.
The bridge (``group_commit=True``) runs the connection with ``synchronous=NORMAL`` instead: a COMMIT
only write()s its frames to ``<db>-wal`` (microseconds; safe from a crash of the bridge, as the OS has
them, not yet from a power cut). Whatever then tells someone outside "stored" awaits ``durable()``,
which flushes the WAL file in a worker thread. One flush covers every commit made before it started,
and everyone who asks while one is running shares the next one (group commit)::

    event loop thread                                   flush thread
    ─────────────────────────────────────────────       ──────────────────────────────────────
    commit A; await durable() ─── flush 1 starts ─────▶ fdatasync(<db>-wal)    covers A
    commit B; await durable() ─┐                             │
    commit C; await durable() ─┤ (after flush 1 began:       │
    commit D; await durable() ─┤  they share the next)       ▼
    A's ack ◀──────────────────┼───────────────────── flush 1 done
                               └─ flush 2 starts ─────▶ fdatasync(<db>-wal)    covers B, C and D
    B's, C's and D's acks ◀───────────────────────── flush 2 done

Why that is as durable as FULL (SQLite 3.40, src/wal.c, os_unix.c; sqlite.org wal.html, pragma.html):

1. FULL's commit-time sync *is* a sync of the WAL file after the commit's frames are written (walFrames:
   "padding and syncing only occur if PRAGMA synchronous=FULL"; with powersafe overwrite, the unix default,
   there is no padding, only the sync, an fdatasync on Linux). Our flush makes the same call on the same
   file, after the commit's write()s returned, so the disk then holds what FULL would have made it hold.
   Recovery replays every frame whose salts and running checksum match: every commit wholly on disk.
2. Later, unflushed commits only append after it; a torn append fails its checksum and is dropped on
   recovery, never an earlier frame (the same powersafe-overwrite assumption FULL makes on unix).
3. Checkpoint and WAL reset: in NORMAL mode the WAL is synced before any page is copied into the
   database, and the database file is synced before the checkpoint is marked complete (nBackfill). The
   WAL is reset (written again from frame 1, new salts) only after a complete checkpoint, so only when
   everything in it is already durable in the database file; the new WAL header is synced before new
   frames follow it. Overwriting old frames never loses an acknowledged commit.
4. journal_size_limit stays at its default (-1: never truncated). When set, SQLite truncates the WAL after
   the first commit of a reset WAL to max(limit, end of the current frames), so current frames stay; the
   TRUNCATE checkpoint in ``checkpoint()`` truncates only after a complete, synced checkpoint. The flush
   opens ``<db>-wal`` by name every time, so it always syncs the file SQLite is writing now.
5. A new WAL file's directory entry must be durable too: SQLite syncs the directory at the first sync of
   a WAL it created; the flush does the same the first time it sees a WAL file (by inode).
6. A failed flush may have lost the dirty pages for good (Linux marks them clean after reporting the error),
   so nothing committed before it can be promised any more: from then on every ``durable()`` fails
   (``StoreNotDurable``), nothing is acknowledged, ``/health`` answers 503, and the bridge needs a restart.
   A file that cannot even be opened (out of descriptors under a flood) loses nothing: those waiting are
   refused, and the next flush tries again.

Who awaits it: the visitor API's and console's HTTP answers (``web.server``), the WebSocket's acks and
message frames (``web.visitor_api``: the page takes its own message coming back as delivered; a socket
reads on while its acks wait, and ``durable(mark)`` lets each go with the first flush that covers it), the
appservice 200 (``appservice.endpoint``), every request to the homeserver (``matrix.homeserver``: txn IDs,
puppets and rooms are on disk before the homeserver acts on them, as ``outbox`` relies on) and webhook
deliveries. Reads, and work nobody outside hears of, do not wait. Command-line tools open the store
without ``group_commit`` (FULL; ``durable()`` returns at once).

Checkpoints stay on this one connection (SQLite's automatic checkpoint every 1000 WAL pages: a copy and
two syncs on the loop every hundred messages or so), not in a second connection on a thread: before
3.51.3 SQLite has the "WAL-reset bug", where a checkpoint on one connection racing a commit that resets
the WAL on another can record a wrong backfill mark and corrupt the database. Measured with
bench/commit.py, turning the automatic checkpoint off did not change /health during a flood (p99 14.4
against 13.6 ms): what is left on the loop is the Python work of each message, not the disk.

Commits that change no row (DDL) are not seen by the "anything to flush?" check (``total_changes``);
only migrations run DDL, and the first ``durable()`` after opening always flushes.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import threading
import time
import sqlite3
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils

from ..private_files import private_dir, private_file
from ..resources import Shortages

log = logging.getLogger(__name__)


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


def _v16(db: sqlite_utils.Database) -> None:
    # Signed checkpoints of the audit chain's head (records/audit.py): a rewrite of the chain is caught.
    db["audit_checkpoints"].create({"idx": int, "hash": str, "ts": int, "signature": str, "public_key": str},
                                   pk="idx", not_null={"hash", "ts", "signature", "public_key"})


def _v17(db: sqlite_utils.Database) -> None:
    # Read receipts: the last message an officer's client marked read (the citizen sees "Read" up to it).
    db["chats"].add_column("read_seq", int)


def _v18(db: sqlite_utils.Database) -> None:
    # When an officer said !away: their chats are handed on after the agency's grace (officers/routing.py).
    db["officers"].add_column("away_ts", int)


def _v19(db: sqlite_utils.Database) -> None:
    # A practice chat's scenario (chats/training.py); NULL for every real chat.
    db["chats"].add_column("training", str)


def _v20(db: sqlite_utils.Database) -> None:
    # The room keys the bridge's clients created (store/puppets.py): kept across a restart, so an officer
    # who joins after messages were sent can still be given their keys.
    db["puppet_room_keys"].create({"user_id": str, "room_id": str, "session_id": str, "content": str,
                                   "created_ts": int}, pk=("user_id", "room_id", "session_id"),
                                  not_null={"content", "created_ts"})


def _v21(db: sqlite_utils.Database) -> None:
    # Lookups that scanned tables which grow with every chat ever served. The inbound pump asks for the
    # unprocessed transactions after every transaction (about 50 a chat), and the processed ones stay for
    # weeks: a partial index holds only the few waiting. Reactions on dispatch notices and offline-message
    # notices found their chat or ticket by reading every row.
    db.execute("CREATE INDEX idx_as_transactions_unprocessed ON as_transactions (received_ts)"
               " WHERE processed_ts IS NULL")
    db["chats"].create_index(["dispatch_event_id"])
    db["tickets"].create_index(["event_id"])


def _v22(db: sqlite_utils.Database) -> None:
    # Puppets to retire (matrix/puppets.py): marked when their chat is purged or erased, so the keeper's sweep
    # reads those few rather than every puppet against every chat and record. The puppets of chats purged or
    # erased before this version are marked now; '(bot)' is the bot's row, which never has a chat.
    db["puppets"].add_column("retire_ts", int)
    db.execute("CREATE INDEX idx_puppets_retiring ON puppets (retire_ts) WHERE retire_ts IS NOT NULL")
    db.execute("UPDATE puppets SET retire_ts = ? WHERE chat_id IS NOT NULL AND chat_id != '(bot)' AND ("
               " chat_id NOT IN (SELECT id FROM chats)"
               " OR chat_id IN (SELECT chat_id FROM chat_records WHERE kind = 'erased'))", [int(time.time() * 1000)])


def _v23(db: sqlite_utils.Database) -> None:
    # Olm messages a device has handled (store/puppets.py): the inbox fetch and a transaction fed again after a
    # crash hand some over a second time, and they are passed over rather than decrypted again.
    db.execute('CREATE TABLE "puppet_olm_taken" ("user_id" TEXT, "digest" TEXT, "created_ts" INTEGER NOT NULL, '
               'PRIMARY KEY ("user_id", "digest")) WITHOUT ROWID')
    db.execute("CREATE INDEX idx_puppet_olm_taken_created ON puppet_olm_taken (created_ts)")


# Numbered upgrade steps: never edit a released step, append a new one.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11,
                                                             _v12, _v13, _v14, _v15, _v16, _v17, _v18, _v19, _v20,
                                                             _v21, _v22, _v23]


class StoreTooNew(Exception):
    """The database was written by a newer Precinct: this code must not touch it (it would not know the
    newer tables' rules, and an older schema step would never be run against it)."""


FREE_SPACE_NEEDED = 1 << 20    # bytes free on the store's file system below which it counts as full


def is_full(error: BaseException | None) -> bool:
    """Whether an error says the store's disk (or the owner's quota) is full: SQLite's SQLITE_FULL, or the
    ENOSPC/EDQUOT of a file write, however deep in the chain of causes."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, sqlite3.Error) and (getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                                 or "database or disk is full" in str(error)):
            return True
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


class StoreNotDurable(Exception):
    """The write-ahead log could not be flushed: nothing may be acknowledged as stored (see the module doc)."""


def flush_file(fd: int) -> None:
    """What SQLite's FULL mode calls on the WAL at commit on Linux (fsync where there is no fdatasync)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


class Database:
    """The bridge's store connection. Table modules take one of these.

    ``group_commit``: synchronous=NORMAL plus the ``durable()`` barrier (the bridge); otherwise FULL
    (command-line tools, tests of other things). ``flush``: how a file descriptor is flushed to disk,
    given to the worker thread (``flush_file``; tests pass one that records, blocks or fails).
    """

    def __init__(self, path: Path | str, *, group_commit: bool = False,
                 flush: Callable[[int], None] = flush_file) -> None:
        self.path = Path(path)
        in_memory = str(path) == ":memory:"
        if not in_memory:
            # Owner-only whatever the umask: SQLite gives the -wal and -shm files the database file's mode.
            if not self.path.parent.exists():
                private_dir(self.path.parent)
            for file in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                if file == self.path or file.exists():     # an older run's WAL/SHM may be wider
                    private_file(file)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        if not in_memory:
            self.db.enable_wal()
        self.group_commit = group_commit and not in_memory
        self.db.execute(f"PRAGMA synchronous={'NORMAL' if self.group_commit else 'FULL'}")
        self.db.execute("PRAGMA busy_timeout=10000")     # another process (the CLI) may hold the write lock
        self.db.execute("PRAGMA secure_delete=ON")       # erased and purged text is overwritten, not just unlinked
        self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()
        # The durability barrier (group commit); see the module docstring.
        self._flush = flush
        self._flusher = _FlushThread() if self.group_commit else None
        self._covered: int | None = None       # mark() when the last completed flush started (total_changes)
        self._running: asyncio.Future | None = None    # the flush in progress
        self._running_covers: int | None = None        # … and total_changes when it started
        self._next: asyncio.Future | None = None       # the flush the latest callers wait for, once that one ends
        self._flushed_wal: tuple[int, int] | None = None   # (st_dev, st_ino) whose directory entry is synced
        self.failure: BaseException | None = None
        self.full_since: float | None = None   # when a write last failed for want of space (logged once)
        self._shortages = Shortages()          # out of descriptors, every flush fails: logged once a minute
        self.flushes = 0                       # flushes completed (for tests and benchmarks)

    @property
    def version(self) -> int:
        if "schema_version" not in self.db.table_names():
            return 0
        row = self.db.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def migrate(self) -> None:
        current = self.version
        if current > len(MIGRATIONS):
            raise StoreTooNew(f"{self.path} is at schema version {current}, and this Precinct knows versions up "
                              f"to {len(MIGRATIONS)}: a newer Precinct wrote it. Run that version, or restore the "
                              "backup taken before the upgrade (docs/deployment.md).")
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
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.note(e)
            raise
        else:
            conn.execute("COMMIT")

    def note(self, error: BaseException) -> bool:
        """Whether ``error`` says the disk is full (logged once until there is space again). Called where a write
        fails: ``transaction()`` itself, and whoever answers for a write made without one."""
        if not is_full(error):
            return False
        if self.full_since is None:
            log.error("the store's disk is full (%s): new input is refused until space is freed on %s",
                      error, self.path.parent)
        self.full_since = time.time()
        return True

    def full(self) -> bool:
        """Whether the store's file system is out of space: under ``FREE_SPACE_NEEDED`` bytes free (a write may
        still fit into space SQLite's files already have, but the next that needs more fails). Asked by
        ``/health``: a look at the file system, no write. Nothing needs restarting when space comes back: the
        next write that finds room succeeds, and each that failed was rolled back whole."""
        if str(self.path) == ":memory:":
            return False
        try:
            info = os.statvfs(self.path.parent)
        except OSError:
            return self.full_since is not None
        if info.f_bavail * info.f_frsize >= FREE_SPACE_NEEDED:
            if self.full_since is not None:
                log.warning("the store's disk has space again: new input is taken again")
                self.full_since = None
            return False
        return True

    def mark(self) -> int | None:
        """Where the commits stand now, for a later ``durable(mark)`` (None inside a transaction: not yet)."""
        conn = self.db.conn
        return None if conn.in_transaction else conn.total_changes

    async def durable(self, mark: int | None = None) -> None:
        """Return once everything committed before this call (or before ``mark()`` gave ``mark``) is on disk;
        ``StoreNotDurable`` if it cannot be.

        Await it after the commit and before telling anyone outside "stored" (an ack, an HTTP answer, a
        homeserver request acting on it). It does not hold up the event loop: the flush runs in a thread, and
        callers that arrive while one runs share the next one. A ``mark`` lets an ack queued behind others be
        answered by any flush that began after its commit, even if more was committed since."""
        if not self.group_commit:
            return                              # FULL: every commit was synced before it returned
        if self.failure is not None:
            raise StoreNotDurable(f"the store's write-ahead log could not be flushed: {self.failure}")
        if mark is None:
            mark = self.mark()
        if mark is not None and self._covered is not None and mark <= self._covered:
            return                              # a completed flush began after it
        if mark is not None and self._running_covers is not None and mark <= self._running_covers:
            waiting = self._running             # the running flush began after it
        else:
            waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
            waiting.add_done_callback(_observe)
            if self._running is None:
                self._start_flush()
        await asyncio.shield(waiting)          # one caller giving up must not cancel the others' flush

    def _start_flush(self) -> None:
        assert self._flusher is not None and self._next is not None
        waiting, self._next = self._next, None
        self._running = waiting
        # Everything committed so far is in the WAL file (write() returned); a transaction still open is not.
        covers = self._running_covers = self.mark()
        flushing = self._flusher.run(self._flush_wal)

        def finished(done: asyncio.Future) -> None:
            self._running = self._running_covers = None
            error = done.exception() if not done.cancelled() else asyncio.CancelledError()
            if isinstance(error, _NotOpened):
                # Nothing was lost (out of file descriptors, say): these callers are refused, later ones retry.
                self._shortages.report("store flush", "the store's files could not be opened to flush them; "
                                       "what waited for them is refused and the next flush tries again", error)
                waiting.set_exception(StoreNotDurable(f"the store's files could not be opened: {error}"))
                if self._next is not None:
                    self._start_flush()
                return
            if error is not None and self.failure is None:
                self.failure = error
                log.critical("the store's write-ahead log could not be flushed to disk (%s): nothing will be "
                             "acknowledged as stored until the bridge is restarted", error)
            if self.failure is not None:
                failed = StoreNotDurable(f"the store's write-ahead log could not be flushed: {self.failure}")
                for future in (waiting, self._next):
                    if future is not None and not future.done():
                        future.set_exception(failed)
                self._next = None
                return
            self.flushes += 1
            if covers is not None:
                self._covered = covers
            waiting.set_result(None)
            if self._next is not None:
                self._start_flush()
        flushing.add_done_callback(finished)

    def _flush_wal(self) -> None:
        """In the flush thread: the WAL file to disk, and its directory entry the first time we see that file.
        No WAL file (SQLite removes it only after a complete, synced checkpoint): the database file instead."""
        fd = _open(f"{self.path}-wal")
        if fd is None:
            fd = _open(self.path)
        if fd is None:
            raise _NotOpened(f"neither {self.path}-wal nor {self.path} exists")
        try:
            info = os.fstat(fd)
            self._flush(fd)
        finally:
            os.close(fd)
        if (info.st_dev, info.st_ino) != self._flushed_wal:
            folder = _open(self.path.parent, getattr(os, "O_DIRECTORY", 0))
            if folder is None:
                raise _NotOpened(f"{self.path.parent} does not exist")
            try:
                self._flush(folder)
            finally:
                os.close(folder)
            self._flushed_wal = (info.st_dev, info.st_ino)

    def execute(self, sql: str, params: list | tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def rows(self, sql: str, params: list | tuple = ()) -> list[dict]:
        """The rows of a SELECT, as dicts. Straight on the connection: sqlite-utils' ``query`` wraps every
        statement in a savepoint (three statements for one read), in case it writes; ours only read, and the
        store reads thousands of times per chat (bench/chat_life.py's profile)."""
        cursor = self.db.conn.execute(sql, params)
        if cursor.description is None:
            raise ValueError(f"not a query: {sql[:60]!r}")
        keys = [d[0] for d in cursor.description]
        return [dict(zip(keys, row)) for row in cursor]

    def row(self, sql: str, params: list | tuple = ()) -> dict | None:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database and empty it, so no old copy of erased rows stays in
        it (best effort: a reader in another process can keep part of it until it finishes)."""
        if str(self.path) != ":memory:":
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.shutdown(wait=True)     # a flush in progress finishes first
        self.db.close()


class _FlushThread:
    """The one thread the store's flushes run in, one at a time, in order.

    A ``ThreadPoolExecutor`` did the same, but its hand-over (locks, a semaphore and a work item per call, in
    Python) cost more of the event loop than the flush itself: a store flush follows every appservice
    transaction and every visitor message, and the hand-over was 5 % of the bridge's CPU per chat (py-spy over
    bench/chat_life.py). Here it is a put on a C queue and, when done, one call back into the loop."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, work: Callable[[], None]) -> asyncio.Future:
        """Run ``work`` in the thread; the future is settled in the calling loop when it has."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="store-flush", daemon=True)
            self._thread.start()
        self._jobs.put((loop, done, work))
        return done

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, done, work = job
            error: BaseException | None = None
            try:
                work()
            except BaseException as e:          # handed to the waiting loop, whatever it is
                error = e
            try:
                loop.call_soon_threadsafe(_settle, done, error)
            except RuntimeError:                # the loop is closed: nobody waits any more
                pass

    def shutdown(self, wait: bool = True) -> None:
        """Stop the thread once the flushes asked for so far are done (``wait``: return only then)."""
        if self._thread is not None:
            self._jobs.put(None)
            if wait:
                self._thread.join()
            self._thread = None


def _settle(done: asyncio.Future, error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class _NotOpened(Exception):
    """A file to flush could not even be opened: nothing was written or lost, so the store has not failed."""


def _open(path: Path | str, flags: int = 0) -> int | None:
    """A read-only descriptor to flush ``path`` with; None if it does not exist."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | flags)
    except FileNotFoundError:
        return None
    except OSError as e:                        # EMFILE under a flood of sockets, EACCES …
        raise _NotOpened(f"{path}: {e}") from e


def _observe(future: asyncio.Future) -> None:
    """Mark a flush's failure as seen even when every caller gave up waiting (no "never retrieved" noise)."""
    if not future.cancelled():
        future.exception()


def schema_snapshot() -> str:
    """The schema every migration above leads to, as SQL: what ``schema.sql`` beside this module shows a
    reader (tests/unit/test_store.py keeps the two equal). Regenerate it with
    ``python -m bridge.store.db > bridge/store/schema.sql``."""
    db = Database(":memory:")
    rows = db.db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                         "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'table' DESC, tbl_name, type, name").fetchall()
    head = (f"-- Precinct's store at schema version {len(MIGRATIONS)} (generated by bridge/store/db.py: "
            "schema_snapshot; do not edit by hand)\n")
    return head + "".join(f"\n{sql.strip()};\n" for _, _, sql in rows)


if __name__ == "__main__":
    print(schema_snapshot(), end="")
