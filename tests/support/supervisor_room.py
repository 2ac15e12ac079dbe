"""A supervisors' room made by a real supervisor account before the bridge starts (daily summary tests)."""
from __future__ import annotations

from urllib.parse import quote

from bridge.devtools.localhs import request_json


def login(hs_url: str, localpart: str, password: str) -> str:
    status, body = request_json("POST", hs_url + "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}, "password": password})
    assert status == 200, body
    return body["access_token"]


def create_room(hs_url: str, token: str, name: str, invite: list[str]) -> str:
    status, body = request_json("POST", hs_url + "/_matrix/client/v3/createRoom",
                                {"preset": "private_chat", "name": name, "invite": invite}, token=token)
    assert status == 200, body
    return body["room_id"]


def notices(hs_url: str, token: str, room_id: str, sender: str) -> list[str]:
    """The bodies of the room's latest messages from ``sender``, newest first."""
    status, body = request_json("GET", f"{hs_url}/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=50",
                                token=token)
    assert status == 200, body
    return [e["content"].get("body", "") for e in body.get("chunk", [])
            if e.get("sender") == sender and e.get("type") == "m.room.message"]
