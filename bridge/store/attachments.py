"""The ``attachments`` table: the file behind an image/file message (media location, decryption info)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .db import Database


@dataclass
class Attachment:
    chat_id: str
    seq: int
    name: str
    mimetype: str
    size: int | None
    sha256: str | None          # hex SHA-256 of the plaintext, when known
    mxc: str
    file_info: dict[str, Any] | None   # Matrix EncryptedFile (key, iv, hashes) or None if not encrypted


class Attachments:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, a: Attachment) -> None:
        self.db.execute("INSERT INTO attachments (chat_id, seq, name, mimetype, size, sha256, mxc, file_info)"
                        " VALUES (?,?,?,?,?,?,?,?)", [a.chat_id, a.seq, a.name, a.mimetype, a.size, a.sha256, a.mxc,
                                                       json.dumps(a.file_info) if a.file_info else None])

    def delete_chat(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM attachments WHERE chat_id = ?", [chat_id])

    def get(self, chat_id: str, seq: int) -> Attachment | None:
        row = self.db.row("SELECT * FROM attachments WHERE chat_id = ? AND seq = ?", [chat_id, seq])
        if not row:
            return None
        row["file_info"] = json.loads(row["file_info"]) if row["file_info"] else None
        return Attachment(**row)
