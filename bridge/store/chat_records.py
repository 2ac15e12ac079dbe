"""The ``chat_records`` table: each chat's hash-chained transcript entries (see ``bridge.records``).

``details`` is the hashed, non-personal part; ``content`` (personal: message text, names) is kept
beside it with its ``salt``, committed to by ``content_hash``; ``text`` is what full-text search
indexes. Erasure empties content, salt and text and leaves the chain intact.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Database


@dataclass
class ChatRecord:
    chat_id: str
    idx: int
    ts: int
    kind: str
    actor: str | None
    details: dict[str, Any]
    content: dict[str, Any] | None
    salt: str | None
    content_hash: str | None
    prev_hash: str
    hash: str
    erased_ts: int | None = None


def _record(row: dict) -> ChatRecord:
    row.pop("text", None)
    row["details"] = json.loads(row["details"])
    row["content"] = json.loads(row["content"]) if row["content"] is not None else None
    return ChatRecord(**row)


@dataclass
class SearchHit:
    chat_id: str
    number: int
    agency: str
    topic: str
    officer: str | None
    idx: int
    ts: int
    kind: str
    snippet: str


class ChatRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, r: ChatRecord, text: str | None) -> None:
        self.db.execute(
            "INSERT INTO chat_records (chat_id, idx, ts, kind, actor, details, content, salt, content_hash,"
            " prev_hash, hash, text) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [r.chat_id, r.idx, r.ts, r.kind, r.actor, json.dumps(r.details, sort_keys=True),
             json.dumps(r.content, sort_keys=True) if r.content is not None else None, r.salt, r.content_hash,
             r.prev_hash, r.hash, text])

    def last(self, chat_id: str) -> tuple[int, str] | None:
        """(index, hash) of the chat's newest entry."""
        row = self.db.row("SELECT idx, hash FROM chat_records WHERE chat_id = ? ORDER BY idx DESC LIMIT 1", [chat_id])
        return (row["idx"], row["hash"]) if row else None

    def entries(self, chat_id: str) -> list[ChatRecord]:
        return [_record(r) for r in self.db.rows("SELECT * FROM chat_records WHERE chat_id = ? ORDER BY idx",
                                                 [chat_id])]

    def erase_content(self, chat_id: str) -> int:
        """Forget the personal part of every entry of one chat; the hashed part stays."""
        cur = self.db.execute("UPDATE chat_records SET content = NULL, salt = NULL, text = NULL, erased_ts = ?"
                              " WHERE chat_id = ? AND erased_ts IS NULL", [int(time.time() * 1000), chat_id])
        return cur.rowcount

    def has_kind(self, chat_id: str, kind: str) -> bool:
        return self.db.row("SELECT 1 AS x FROM chat_records WHERE chat_id = ? AND kind = ? LIMIT 1",
                           [chat_id, kind]) is not None

    def compact_index(self) -> None:
        """Merge the full-text index so deleted text leaves its segments (after an erasure or purge)."""
        self.db.execute("INSERT INTO chat_records_fts(chat_records_fts) VALUES('optimize')")

    def delete_chat(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM chat_records WHERE chat_id = ?", [chat_id])

    def search(self, phrase: str, *, agency: str | None = None, topic: str | None = None,
               officer: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
               tag: str | None = None, rating: int | None = None, limit: int = 100) -> list[SearchHit]:
        """Entries whose text matches ``phrase`` (an FTS5 phrase), newest first, with chat filters."""
        where, params = ["chat_records_fts MATCH ?"], [_fts_phrase(phrase)]
        for column, value in (("c.agency", agency), ("c.topic", topic)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if officer:
            where.append("(c.officer = ? OR EXISTS (SELECT 1 FROM chat_records o WHERE o.chat_id = r.chat_id"
                         " AND o.actor = ?))")
            params += [officer, officer]
        if since_ms is not None:
            where.append("c.created_ts >= ?")
            params.append(since_ms)
        if until_ms is not None:
            where.append("c.created_ts < ?")
            params.append(until_ms)
        if tag:
            where.append("EXISTS (SELECT 1 FROM chat_records t WHERE t.chat_id = r.chat_id AND t.kind = 'tag'"
                         " AND json_extract(t.details, '$.tag') = ?)")
            params.append(tag)
        if rating is not None:
            where.append("EXISTS (SELECT 1 FROM feedback f WHERE f.chat_id = r.chat_id AND f.rating = ?)")
            params.append(rating)
        rows = self.db.rows(
            "SELECT r.chat_id, c.number, c.agency, c.topic, c.officer, r.idx, r.ts, r.kind,"
            " snippet(chat_records_fts, 0, '[', ']', '…', 12) AS snippet"
            " FROM chat_records_fts JOIN chat_records r ON r.rowid = chat_records_fts.rowid"
            " JOIN chats c ON c.id = r.chat_id WHERE " + " AND ".join(where) +
            " ORDER BY r.ts DESC LIMIT ?", params + [limit])
        return [SearchHit(**r) for r in rows]


def _fts_phrase(phrase: str) -> str:
    """Quote the words so search input is never FTS5 syntax (no injection of NEAR/OR/column filters)."""
    words = [w.replace('"', '""') for w in phrase.split()]
    return " ".join(f'"{w}"' for w in words) if words else '""'
