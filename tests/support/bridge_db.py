"""Read-only peeks into the bridge's store, for tests that must name a chat's room."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from .waiting import until


async def room_of(db_path: Path, chat_id: str, timeout: float = 30) -> str:
    def look() -> str | None:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT room_id FROM chats WHERE id = ?", [chat_id]).fetchone()
        finally:
            conn.close()
        return row[0] if row and row[0] else None
    return await until(look, timeout, f"room of chat {chat_id}")


async def dispatch_room_of(db_path: Path, agency: str, timeout: float = 60) -> str:
    """The agency's dispatch room, as the bridge recorded it."""
    def look() -> str | None:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", [f"dispatch_room.{agency}"]).fetchone()
        finally:
            conn.close()
        return row[0] if row and row[0] else None
    return await until(look, timeout, f"dispatch room of {agency}")
