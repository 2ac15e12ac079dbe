"""Chat rooms: created by the visitor's puppet, encrypted from the first event, officers invited."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from . import cs_api
from .homeserver import HomeserverApi, MatrixError


@dataclass
class RoomPolicy:
    """What every room the bridge makes shares: one value, given to whoever makes rooms (puppets' pool,
    chats, dispatch rooms). ``acl``: the m.room.server_acl content (officers/access.py), None for no ACL;
    ``version``: the homeserver's default room version, learnt once at start-up."""
    acl: dict[str, Any] | None = None
    version: str = "10"


def creator_has_implicit_power(room_version: str) -> bool:
    """Room version 12 and later give creators unlimited power; they must not be listed in power levels."""
    return room_version.isdigit() and int(room_version) >= 12


ROOM_TOPIC = "Web chat with a member of the public, bridged by Precinct."


def power_levels(bot: str, creator: str, room_version: str) -> dict[str, Any]:
    """Every member but the bridge has officer power (50): only invited officers can ever join.

    Fixed when the room is made, so giving a room to a chat needs no power-levels event.
    """
    users = {bot: 100}
    if not creator_has_implicit_power(room_version):
        users[creator] = 100
    # Only the bridge decides which servers may take part (see officers/access.py).
    return {"users": users, "users_default": 50, "events_default": 0, "state_default": 50, "invite": 50,
            "kick": 50, "ban": 50, "redact": 50, "events": {"m.room.server_acl": 100}}


INITIAL_STATE = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
    # Officers are invited only when they take the chat (or it is transferred to them), after the citizen
    # has written: "shared" lets them read the conversation from its start (the room is invite-only).
    {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
    {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
]


def server_acl_state(acl: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The m.room.server_acl initial-state event (none when no ACL is given)."""
    return [] if acl is None else [{"type": "m.room.server_acl", "state_key": "", "content": acl}]


def pool_room_request(bot: str, creator: str, room_version: str, acl: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat room made ahead for a pool puppet: encrypted from its first event, nobody invited yet."""
    return {"preset": "private_chat", "is_direct": False, "topic": ROOM_TOPIC,
            "initial_state": INITIAL_STATE + server_acl_state(acl),
            "power_level_content_override": power_levels(bot, creator, room_version),
            "creation_content": {"m.federate": True}}


def chat_room_request(name: str, officers: list[str], bot: str, creator: str, room_version: str,
                      acl: dict[str, Any] | None = None) -> dict[str, Any]:
    """The createRoom body for a chat made on demand (pure; tested without a homeserver)."""
    return {
        "preset": "private_chat",
        "name": name,
        "topic": ROOM_TOPIC,
        "invite": officers,
        "is_direct": False,
        "initial_state": INITIAL_STATE + server_acl_state(acl),
        "power_level_content_override": power_levels(bot, creator, room_version),
        "creation_content": {"m.federate": True},
    }


async def default_room_version(api: HomeserverApi) -> str:
    data = await api.send(cs_api.capabilities(), what="capabilities")
    return str(data.get("capabilities", {}).get("m.room_versions", {}).get("default", "10"))


async def find_chat_room(api: HomeserverApi, puppet: str) -> str | None:
    """The room a puppet already created (after a crash between createRoom and storing its ID)."""
    rooms = await api.joined_rooms(puppet)
    return rooms[0] if rooms else None


async def create_chat_room(api: HomeserverApi, puppet: str, body: dict[str, Any]) -> str:
    data = await api.send(cs_api.create_room(body), user_id=puppet, what="create chat room")
    return data["room_id"]


async def dress_chat_room(api: HomeserverApi, puppet: str, room_id: str, name: str, officers: list[str]) -> None:
    """Give a pool room to a chat: its name, then the officers' invites (idempotent).

    Only two kinds of event, because every event costs a turn of the homeserver's per-room queue
    on the new chat's critical path; everything else was set when the room was made.
    """
    await api.send(cs_api.set_state(room_id, "m.room.name", "", {"name": name}), user_id=puppet, what="name the room")
    await asyncio.gather(*(_invite(api, puppet, room_id, officer) for officer in officers))


async def invite(api: HomeserverApi, puppet: str, room_id: str, officer: str) -> None:
    """Invite one officer (already invited or joined is fine)."""
    await _invite(api, puppet, room_id, officer)


async def kick(api: HomeserverApi, puppet: str, room_id: str, user_id: str, reason: str) -> None:
    """Remove a member or withdraw an invite (someone already gone is fine)."""
    try:
        await api.send(cs_api.kick(room_id, user_id, reason), user_id=puppet, what="remove member")
    except MatrixError as e:
        if e.status != 403 or "not in the room" not in str(e).lower():
            raise


async def ensure_server_acl(api: HomeserverApi, puppet: str, room_id: str, acl: dict[str, Any]) -> None:
    """Make the room's m.room.server_acl say ``acl`` (rooms made before the allowlist changed)."""
    try:
        current = await api.send(cs_api.get_state(room_id, "m.room.server_acl", ""), user_id=puppet,
                                 what="read server ACL")
    except MatrixError as e:
        if e.status != 404:
            raise
        current = None
    if current != acl:
        await api.send(cs_api.set_state(room_id, "m.room.server_acl", "", acl), user_id=puppet, what="set server ACL")


async def members(api: HomeserverApi, puppet: str, room_id: str) -> dict[str, dict[str, Any]]:
    """{user ID: member event content (membership, displayname …)} from the room's current state."""
    return {e["state_key"]: e.get("content") or {}
            for e in await api.room_state(puppet, room_id) if e.get("type") == "m.room.member"}


async def _invite(api: HomeserverApi, puppet: str, room_id: str, officer: str) -> None:
    try:
        await api.send(cs_api.invite(room_id, officer), user_id=puppet, what="invite officer")
    except MatrixError as e:
        if "already" not in str(e):      # re-inviting someone invited or joined (a resumed set-up) is fine
            raise
