"""The ``settings`` table: a few values the bridge remembers about itself (e.g. its status room)."""
from __future__ import annotations

from .db import Database


class Settings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> str | None:
        row = self.db.row("SELECT value FROM settings WHERE key = ?", [key])
        return row["value"] if row else None

    def set(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, value])

    def with_prefix(self, prefix: str) -> dict[str, str]:
        """Every key that starts with ``prefix`` and its value (e.g. one entry per direct room)."""
        return {r["key"]: r["value"] for r in self.db.rows(
            "SELECT key, value FROM settings WHERE substr(key, 1, ?) = ?", [len(prefix), prefix])}
