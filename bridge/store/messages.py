"""The ``messages`` table: the conversation as the citizen sees it, numbered by ``seq`` per chat.

Both directions and system lines live here.  ``client_id`` (visitor side) and
``event_id`` (Matrix side) are unique, which is what makes every path
idempotent: a replayed frame or transaction finds its row and changes nothing.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Database

VISITOR, OFFICER, SYSTEM = "visitor", "officer", "system"


@dataclass
class Message:
    chat_id: str
    seq: int
    sender_kind: str          # visitor | officer | system
    kind: str                 # text | notice | emote | edit | redaction
    sender: str | None        # display name
    sender_mxid: str | None
    body: str
    ts: int
    client_id: str | None
    event_id: str | None
    target_seq: int | None
    code: str | None = None   # system messages: the notice code (bridge/chats/notices.py)
    params: str | None = None  # … and its parameters, as JSON

    @property
    def notice_params(self) -> dict[str, Any]:
        return json.loads(self.params) if self.params else {}


class Messages:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, chat_id: str, sender_kind: str, kind: str, body: str, *, sender: str | None = None,
            sender_mxid: str | None = None, client_id: str | None = None, event_id: str | None = None,
            target_seq: int | None = None, ts: int | None = None, code: str | None = None,
            params: dict[str, Any] | None = None, at_least: int = 1) -> Message:
        """Append with the next seq (``at_least``, if that is higher). Call inside a transaction when other rows
        must change with it."""
        with self.db.transaction():
            row = self.db.row("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM messages WHERE chat_id = ?", [chat_id])
            seq = max(row["seq"], at_least)  # type: ignore[index]
            self.db.execute(
                "INSERT INTO messages (chat_id, seq, sender_kind, kind, sender, sender_mxid, body, ts, client_id,"
                " event_id, target_seq, code, params) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [chat_id, seq, sender_kind, kind, sender, sender_mxid, body, ts or int(time.time() * 1000),
                 client_id, event_id, target_seq, code,
                 json.dumps(params, ensure_ascii=False) if params is not None else None])
        return self.get(chat_id, seq)  # type: ignore[return-value]

    def get(self, chat_id: str, seq: int) -> Message | None:
        row = self.db.row("SELECT * FROM messages WHERE chat_id = ? AND seq = ?", [chat_id, seq])
        return Message(**row) if row else None

    def by_client_id(self, chat_id: str, client_id: str) -> Message | None:
        row = self.db.row("SELECT * FROM messages WHERE chat_id = ? AND client_id = ?", [chat_id, client_id])
        return Message(**row) if row else None

    def by_event_id(self, event_id: str) -> Message | None:
        row = self.db.row("SELECT * FROM messages WHERE event_id = ?", [event_id])
        return Message(**row) if row else None

    def since(self, chat_id: str, seq: int, limit: int = 500) -> list[Message]:
        return [Message(**r) for r in self.db.rows(
            "SELECT * FROM messages WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?", [chat_id, seq, limit])]

    def last_seq(self, chat_id: str) -> int:
        return self.db.row("SELECT COALESCE(MAX(seq), 0) AS n FROM messages WHERE chat_id = ?", [chat_id])["n"]  # type: ignore[index]

    def count_from(self, chat_id: str, sender_kind: str) -> int:
        return self.db.row("SELECT COUNT(*) AS n FROM messages WHERE chat_id = ? AND sender_kind = ?",
                           [chat_id, sender_kind])["n"]  # type: ignore[index]

    def erase_chat(self, chat_id: str) -> None:
        """Blank every message of one chat (text, names, notice parameters); the numbering stays."""
        self.db.execute("UPDATE messages SET body = '', sender = NULL, params = NULL WHERE chat_id = ?", [chat_id])

    def delete_chat(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM messages WHERE chat_id = ?", [chat_id])

    def set_event_id(self, chat_id: str, seq: int, event_id: str) -> None:
        self.db.execute("UPDATE messages SET event_id = ? WHERE chat_id = ? AND seq = ?", [event_id, chat_id, seq])

    def last_ts(self, chat_id: str, sender_kind: str) -> int | None:
        """When the chat's latest message from this side (visitor / officer) was written."""
        return self.db.row("SELECT MAX(ts) AS t FROM messages WHERE chat_id = ? AND sender_kind = ? AND kind != ?",
                           [chat_id, sender_kind, "redaction"])["t"]  # type: ignore[index]
