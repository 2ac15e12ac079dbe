"""The ``as_transactions`` table: appservice transactions, written before the homeserver gets its 200.

A retry repeats the same txnId with the same body and is ignored.  Synapse can start
numbering again after its own restart, so the same txnId with a different body is a
new transaction: rows are keyed by the txnId and a digest of the body.  (Room events
inside are de-duplicated by event ID anyway.)
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from .db import Database


class Transactions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, txn_id: str, body: dict[str, Any]) -> bool:
        """Persist a transaction; False when this txn_id was already received (a retry)."""
        text = json.dumps(body, sort_keys=True)
        key = f"{txn_id}#{hashlib.sha256(text.encode()).hexdigest()[:32]}"
        cur = self.db.execute("INSERT OR IGNORE INTO as_transactions (txn_id, body, received_ts) VALUES (?,?,?)",
                              [key, text, int(time.time() * 1000)])
        return cur.rowcount == 1

    def unprocessed(self, limit: int = 50) -> list[tuple[str, dict[str, Any]]]:
        rows = self.db.rows("SELECT txn_id, body FROM as_transactions WHERE processed_ts IS NULL"
                            " ORDER BY received_ts, rowid LIMIT ?", [limit])
        return [(r["txn_id"], json.loads(r["body"])) for r in rows]

    def count_unprocessed(self) -> int:
        return self.db.row("SELECT COUNT(*) AS n FROM as_transactions WHERE processed_ts IS NULL")["n"]  # type: ignore[index]

    def forget_processed(self, before_ms: int) -> int:
        """Drop the bodies of transactions handled before the given time (their keys stay for de-duplication):
        what erasure and retention rely on for the raw events the homeserver sent."""
        return self.db.execute("UPDATE as_transactions SET body = '{}' WHERE processed_ts IS NOT NULL"
                               " AND processed_ts < ? AND body != '{}'", [before_ms]).rowcount

    def mark_processed(self, txn_key: str) -> None:
        self.db.execute("UPDATE as_transactions SET processed_ts = ? WHERE txn_id = ?", [int(time.time() * 1000), txn_key])
