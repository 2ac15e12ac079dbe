"""Chat rooms: created by the visitor's puppet, encrypted from the first event, officers invited."""
from __future__ import annotations

from typing import Any

from .intent import HomeserverApi


def creator_has_implicit_power(room_version: str) -> bool:
    """Room version 12 and later give creators unlimited power; they must not be listed in power levels."""
    return room_version.isdigit() and int(room_version) >= 12


def chat_room_request(name: str, topic: str, officers: list[str], bot: str, creator: str,
                      room_version: str) -> dict[str, Any]:
    """The createRoom body for a chat (pure; tested without a homeserver)."""
    users = {bot: 100, **{o: 50 for o in officers}}
    if not creator_has_implicit_power(room_version):
        users[creator] = 100
    return {
        "preset": "private_chat",
        "name": name,
        "topic": topic,
        "invite": officers,
        "is_direct": False,
        "initial_state": [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            # Officers invited now may read what the citizen wrote while waiting.
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "invited"}},
            {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
        ],
        "power_level_content_override": {
            "users": users,
            "events_default": 0, "invite": 50, "kick": 50, "ban": 50, "redact": 50, "state_default": 50,
        },
        "creation_content": {"m.federate": True},
    }


async def default_room_version(api: HomeserverApi) -> str:
    data = await api.request("GET", "/_matrix/client/v3/capabilities", what="capabilities")
    return str(data.get("capabilities", {}).get("m.room_versions", {}).get("default", "10"))


async def find_chat_room(api: HomeserverApi, puppet: str) -> str | None:
    """The room a puppet already created (after a crash between createRoom and storing its ID)."""
    rooms = await api.joined_rooms(puppet)
    return rooms[0] if rooms else None


async def create_chat_room(api: HomeserverApi, puppet: str, body: dict[str, Any]) -> str:
    data = await api.request("POST", "/_matrix/client/v3/createRoom", body, user_id=puppet, what="create chat room")
    return data["room_id"]
