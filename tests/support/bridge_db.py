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


def rows(db_path: Path, sql: str, args: list | tuple = ()) -> list[tuple]:
    """Any read-only query on the bridge's store (for counts a test checks before and after)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, list(args)).fetchall()
    finally:
        conn.close()


def has_room(db_path: Path, chat_id: str) -> bool:
    """Whether the bridge has given the chat a puppet or a Matrix room yet (read now, no waiting)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT puppet, room_id FROM chats WHERE id = ?", [chat_id]).fetchone()
    finally:
        conn.close()
    return bool(row and (row[0] or row[1]))


def stored_feedback(db_path: Path, chat_id: str) -> tuple[int, str | None] | None:
    """(rating, comment) the bridge stored for a chat, or None."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT rating, comment FROM feedback WHERE chat_id = ?", [chat_id]).fetchone()
    finally:
        conn.close()
    return (row[0], row[1]) if row else None


def audit_entries(db_path: Path, action: str) -> list[dict]:
    """The bridge's audit trail entries for one action (read-only), oldest first."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT actor, outcome, target, origin, details FROM audit_log WHERE action = ?"
                            " ORDER BY idx", [action]).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]
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


def record_of(db_path: Path, chat_id: str) -> list[dict]:
    """The chat's record entries (kind, actor, details, content) as stored, oldest first."""
    import json
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT kind, actor, details, content FROM chat_records WHERE chat_id = ? ORDER BY idx",
                            [chat_id]).fetchall()
    finally:
        conn.close()
    return [{"kind": k, "actor": a, "details": json.loads(d), "content": json.loads(c) if c else None}
            for k, a, d, c in rows]


def stored_ticket(db_path: Path, number: int) -> tuple[str, str, str | None, str | None] | None:
    """(topic, message, name, contact) of an offline message's ticket, or None."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT topic, message, name, contact FROM tickets WHERE number = ?", [number]).fetchone()
    finally:
        conn.close()
    return tuple(row) if row else None  # type: ignore[return-value]


def claimed_by(db_path: Path, chat_id: str) -> str | None:
    """The officer the bridge has given a chat to (by claim or assignment), or None."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT claimed_by FROM chats WHERE id = ?", [chat_id]).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


async def dispatch_notice_of(db_path: Path, chat_id: str, timeout: float = 60) -> str:
    """The event ID of the chat's dispatch notice, once the bridge has sent it."""
    def look() -> str | None:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT dispatch_event_id FROM chats WHERE id = ?", [chat_id]).fetchone()
        finally:
            conn.close()
        return row[0] if row and row[0] else None
    return await until(look, timeout, f"dispatch notice of chat {chat_id}")
