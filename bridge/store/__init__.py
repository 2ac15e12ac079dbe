"""The bridge's SQLite store: one module per table, no SQL outside this package."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .attachments import Attachments
from .chats import Chats
from .db import Database
from .feedback import Feedback
from .messages import Messages
from .officers import Officers
from .outbox import Outbox
from .puppets import Puppets
from .room_events import RoomEvents
from .settings import Settings
from .tickets import Tickets
from .transactions import Transactions


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
    officers: Officers
    tickets: Tickets

    @classmethod
    def open(cls, path: Path | str, first_chat_number: int = 1001) -> "Store":
        db = Database(path)
        return cls(db, Chats(db, first_chat_number), Puppets(db), Messages(db), Outbox(db), Transactions(db),
                   RoomEvents(db), Settings(db), Feedback(db), Attachments(db), Officers(db), Tickets(db))

    def close(self) -> None:
        self.db.close()
