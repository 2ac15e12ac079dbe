"""The bridge's own bot user (the appservice's sender).

At start-up it posts a notice in its status room.  Besides telling administrators when the
bridge (re)started, the event wakes Synapse's appservice scheduler, which after a homeserver
restart stays idle until some new event concerns the appservice: without it, transactions
queued during an outage can wait a minute or more.
"""
from __future__ import annotations

import time

from ..store.settings import Settings
from . import cs_api
from .homeserver import HomeserverApi, MatrixError

STATUS_ROOM = "status_room"
PUSH_MARK = "org.precinct.push_mark"       # an event type clients do not show


async def announce_start(api: HomeserverApi, settings: Settings, bot: str, version: str) -> str:
    """Post "bridge started" in the bot's status room (made once); returns the room ID."""
    room_id = settings.get(STATUS_ROOM)
    if not room_id:
        data = await api.send(cs_api.create_room({
            "preset": "private_chat", "name": "Precinct bridge status",
            "topic": "The Precinct bridge notes here each time it starts."}), user_id=bot, what="status room")
        room_id = data["room_id"]
        settings.set(STATUS_ROOM, room_id)
    text = f"Precinct {version} started at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}."
    try:
        await api.send(cs_api.send_event(room_id, "m.room.message", f"precinct.start.{time.time_ns()}",
                                         {"msgtype": "m.notice", "body": text, "m.mentions": {}}),
                       user_id=bot, what="start-up notice")
    except MatrixError as e:
        if e.status not in (403, 404):
            raise
        settings.set(STATUS_ROOM, "")          # the room is gone (purged?): make a new one next start
    return room_id


async def mark_push(api: HomeserverApi, settings: Settings, bot: str) -> str | None:
    """Write a mark in the status room and return its event ID (None: no status room yet). The homeserver
    pushes the bridge its events in the order they were written, so once the mark has come through the push,
    everything written before it has come too, or never will by itself (appservice/catchup.py)."""
    room_id = settings.get(STATUS_ROOM)
    if not room_id:
        return None
    data = await api.send(cs_api.send_event(room_id, PUSH_MARK, f"precinct.mark.{time.time_ns()}", {}),
                          user_id=bot, what="push mark")
    return str(data["event_id"])


async def join_room(api: HomeserverApi, bot: str, room_id: str) -> bool:
    """Join a room the bot was invited to (joining again is harmless); True when the room is encrypted."""
    await api.send(cs_api.join(room_id), user_id=bot, what="join room")
    return any(e.get("type") == "m.room.encryption" for e in await api.room_state(bot, room_id))


async def post_notice(api: HomeserverApi, bot: str, room_id: str, text: str) -> None:
    """A plain notice from the bot, for a room that is not encrypted."""
    await api.send(cs_api.send_event(room_id, "m.room.message", f"precinct.notice.{time.time_ns()}",
                                     {"msgtype": "m.notice", "body": text, "m.mentions": {}}), user_id=bot, what="bot notice")
