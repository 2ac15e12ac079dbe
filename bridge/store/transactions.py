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


FRESH_MAX = 500     # parsed bodies kept for the pump; beyond that (a backlog) it reads them back from the store


class Transactions:
    def __init__(self, db: Database) -> None:
        self.db = db
        # The bodies stored by this process and not processed yet, as parsed: the pump takes them from here
        # instead of parsing the stored text again (a fiftieth of the bridge's CPU per chat, bench/chat_life.py).
        # The stored text stays the truth: after a restart, or past FRESH_MAX, it is read back.
        self._fresh: dict[str, dict[str, Any]] = {}

    def store(self, txn_id: str, body: dict[str, Any], text: str | None = None) -> bool:
        """Persist a transaction; False when this txn_id was already received (a retry).

        ``text``: the JSON text ``body`` was parsed from, stored as it came (else ``body`` is written out)."""
        if text is None:
            text = json.dumps(body, sort_keys=True)
        key = f"{txn_id}#{hashlib.sha256(text.encode()).hexdigest()[:32]}"
        cur = self.db.execute("INSERT OR IGNORE INTO as_transactions (txn_id, body, received_ts) VALUES (?,?,?)",
                              [key, text, int(time.time() * 1000)])
        if cur.rowcount != 1:
            return False
        if len(self._fresh) < FRESH_MAX:
            self._fresh[key] = body
        return True

    def unprocessed(self, limit: int = 50) -> list[tuple[str, dict[str, Any]]]:
        rows = self.db.rows("SELECT txn_id, body FROM as_transactions WHERE processed_ts IS NULL"
                            " ORDER BY received_ts, rowid LIMIT ?", [limit])
        return [(r["txn_id"], self._fresh[r["txn_id"]] if r["txn_id"] in self._fresh else json.loads(r["body"]))
                for r in rows]

    def count_unprocessed(self) -> int:
        return self.db.row("SELECT COUNT(*) AS n FROM as_transactions WHERE processed_ts IS NULL")["n"]  # type: ignore[index]

    def forget_processed(self, before_ms: int) -> int:
        """Drop the bodies of transactions handled before the given time (their keys stay for de-duplication):
        what erasure and retention rely on for the raw events the homeserver sent."""
        return self.db.execute("UPDATE as_transactions SET body = '{}' WHERE processed_ts IS NOT NULL"
                               " AND processed_ts < ? AND body != '{}'", [before_ms]).rowcount

    def mark_processed(self, txn_key: str) -> None:
        self._fresh.pop(txn_key, None)
        self.db.execute("UPDATE as_transactions SET processed_ts = ? WHERE txn_id = ?", [int(time.time() * 1000), txn_key])
