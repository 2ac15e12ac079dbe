"""The ``record_seals`` table: the bridge's Ed25519 signature over a closed chat's final hash."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database


@dataclass
class Seal:
    chat_id: str
    last_idx: int
    final_hash: str
    signature: str        # base64
    public_key: str       # base64 raw Ed25519 public key
    ts: int


class RecordSeals:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, s: Seal) -> None:
        self.db.execute("INSERT INTO record_seals (chat_id, last_idx, final_hash, signature, public_key, ts)"
                        " VALUES (?,?,?,?,?,?) ON CONFLICT(chat_id) DO UPDATE SET last_idx = excluded.last_idx,"
                        " final_hash = excluded.final_hash, signature = excluded.signature,"
                        " public_key = excluded.public_key, ts = excluded.ts",
                        [s.chat_id, s.last_idx, s.final_hash, s.signature, s.public_key, s.ts])

    def get(self, chat_id: str) -> Seal | None:
        row = self.db.row("SELECT * FROM record_seals WHERE chat_id = ?", [chat_id])
        return Seal(**row) if row else None

    def delete_chat(self, chat_id: str) -> None:
        self.db.execute("DELETE FROM record_seals WHERE chat_id = ?", [chat_id])
