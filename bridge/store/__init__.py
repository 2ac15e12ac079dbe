"""The bridge's SQLite store: one module per table, no SQL outside this package. Knows nothing above it.

    db.py            the connection (WAL), numbered migrations, the durability barrier every ack waits for;
                     schema.sql is the current schema as one readable snapshot (a unit test keeps it true)
    chats.py, messages.py, outbox.py, attachments.py, feedback.py, tickets.py
                     chats and what was said in them, sends owed to Matrix, files, ratings, offline messages
    puppets.py, transactions.py, room_events.py, redactions.py
                     the Matrix side: visitor users, appservice transactions, room events to handle, erasures owed
    chat_records.py, record_seals.py, audit_log.py, legal_holds.py
                     the records (see bridge.records): transcripts, seals, the audit chain, holds
    officers.py, console_links.py, console_sessions.py, settings.py, sources.py, webhooks.py
                     officers seen, console sign-in, the bridge's own values, where chats come from (hashed),
                     webhooks owed
    backup.py        ``backup`` / ``restore``: online copies with a manifest, checked
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .attachments import Attachments
from .audit_log import AuditLog
from .chat_records import ChatRecords
from .chats import Chats
from .console_links import ConsoleLinks
from .console_sessions import ConsoleSessions
from .db import Database
from .feedback import Feedback
from .legal_holds import LegalHolds
from .messages import Messages
from .officers import Officers
from .outbox import Outbox
from .puppets import Puppets
from .record_seals import RecordSeals
from .redactions import Redactions
from .room_events import RoomEvents
from .settings import Settings
from .sources import Sources
from .tickets import Tickets
from .transactions import Transactions
from .webhooks import WebhookOutbox


@dataclass
class Store:
    db: Database
    chats: Chats
    puppets: Puppets
    messages: Messages
    outbox: Outbox
    transactions: Transactions
    room_events: RoomEvents
    settings: Settings
    feedback: Feedback
    attachments: Attachments
    chat_records: ChatRecords
    record_seals: RecordSeals
    audit_log: AuditLog
    legal_holds: LegalHolds
    redactions: Redactions
    webhooks: WebhookOutbox
    console_links: ConsoleLinks
    console_sessions: ConsoleSessions
    officers: Officers
    tickets: Tickets
    sources: Sources

    @classmethod
    def open(cls, path: Path | str, first_chat_number: int = 1001, *, group_commit: bool = False) -> "Store":
        """``group_commit``: the bridge's mode (commits not synced on the loop; acknowledge after
        ``db.durable()``, see store/db.py); without it every commit is synced (command-line tools)."""
        return cls.on(Database(path, group_commit=group_commit), first_chat_number)

    @classmethod
    def on(cls, db: Database, first_chat_number: int = 1001) -> "Store":
        return cls(db, Chats(db, first_chat_number), Puppets(db), Messages(db), Outbox(db), Transactions(db),
                   RoomEvents(db), Settings(db), Feedback(db), Attachments(db), ChatRecords(db), RecordSeals(db),
                   AuditLog(db), LegalHolds(db), Redactions(db), WebhookOutbox(db),
                   ConsoleLinks(db), ConsoleSessions(db), Officers(db), Tickets(db), Sources(db))

    def close(self) -> None:
        self.db.close()
