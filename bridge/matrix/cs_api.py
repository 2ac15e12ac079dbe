"""The client-server API requests the bridge makes, as values (pure; nio's ``api.py`` is the model).

Each function says what one request is — method, path, body — and nothing else: who sends it
(``user_id`` / ``device_id`` masquerading), waiting for the disk, errors and retries belong to
``homeserver.HomeserverApi.send``. Paths are spelled here and nowhere else in the bridge (the demo's
local homeserver and the tests' clients excepted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

CLIENT = "/_matrix/client/v3"
MEDIA_UPLOAD = "/_matrix/media/v3/upload"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)


def _room(room_id: str) -> str:
    return f"{CLIENT}/rooms/{quote(room_id)}"


# ---- the server --------------------------------------------------------------------------------
def versions() -> Request:
    return Request("GET", "/_matrix/client/versions")


def capabilities() -> Request:
    return Request("GET", f"{CLIENT}/capabilities")


def appservice_ping(appservice_id: str, transaction_id: str) -> Request:
    return Request("POST", f"/_matrix/client/v1/appservice/{quote(appservice_id)}/ping",
                   {"transaction_id": transaction_id})


# ---- users and devices -----------------------------------------------------------------------------
def register(localpart: str) -> Request:
    return Request("POST", f"{CLIENT}/register",
                   {"type": "m.login.application_service", "username": localpart, "inhibit_login": True})


def delete_device(device_id: str) -> Request:
    """An appservice deletes its users' devices without interactive auth (MSC4190, as it creates them)."""
    return Request("DELETE", f"{CLIENT}/devices/{quote(device_id)}", {})


def create_device(device_id: str, display_name: str) -> Request:
    """MSC4190: an appservice creates its user's device directly."""
    return Request("PUT", f"{CLIENT}/devices/{quote(device_id)}", {"display_name": display_name})


def display_name(user_id: str, name: str) -> Request:
    return Request("PUT", f"{CLIENT}/profile/{quote(user_id)}/displayname", {"displayname": name})


def presence(user_id: str) -> Request:
    return Request("GET", f"{CLIENT}/presence/{quote(user_id)}/status")


def joined_rooms() -> Request:
    return Request("GET", f"{CLIENT}/joined_rooms")


# ---- keys --------------------------------------------------------------------------------------------
def upload_cross_signing(body: dict[str, Any]) -> Request:
    return Request("POST", f"{CLIENT}/keys/device_signing/upload", body)


def upload_signatures(body: dict[str, Any]) -> Request:
    return Request("POST", f"{CLIENT}/keys/signatures/upload", body)


def query_device_keys(user_id: str, device_id: str) -> Request:
    return Request("POST", f"{CLIENT}/keys/query", {"device_keys": {user_id: [device_id]}})


def send_to_device(event_type: str, txn_id: str, messages: dict[str, dict[str, Any]]) -> Request:
    return Request("PUT", f"{CLIENT}/sendToDevice/{quote(event_type)}/{quote(txn_id)}", {"messages": messages})


def to_device_sync(filter_json: str, since: str | None) -> Request:
    """A /sync that returns only to-device messages (the inbox of one device)."""
    query = {"timeout": "0", "filter": filter_json}
    if since:
        query["since"] = since
    return Request("GET", f"{CLIENT}/sync", query=query)


# ---- rooms -------------------------------------------------------------------------------------------
def create_room(body: dict[str, Any]) -> Request:
    return Request("POST", f"{CLIENT}/createRoom", body)


def join(room_id: str) -> Request:
    return Request("POST", f"{CLIENT}/join/{quote(room_id)}", {})


def leave(room_id: str) -> Request:
    return Request("POST", f"{_room(room_id)}/leave", {})


def invite(room_id: str, user_id: str) -> Request:
    return Request("POST", f"{_room(room_id)}/invite", {"user_id": user_id})


def kick(room_id: str, user_id: str, reason: str) -> Request:
    return Request("POST", f"{_room(room_id)}/kick", {"user_id": user_id, "reason": reason})


def room_messages(room_id: str, limit: int, from_token: str | None = None) -> Request:
    """A page of the room's timeline, newest first (``from_token``: the previous page's ``end``)."""
    query = {"dir": "b", "limit": str(limit)}
    if from_token:
        query["from"] = from_token
    return Request("GET", f"{_room(room_id)}/messages", query=query)


def room_state(room_id: str) -> Request:
    return Request("GET", f"{_room(room_id)}/state")


def get_state(room_id: str, event_type: str, state_key: str) -> Request:
    return Request("GET", f"{_room(room_id)}/state/{quote(event_type)}/{quote(state_key)}")


def set_state(room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> Request:
    return Request("PUT", f"{_room(room_id)}/state/{quote(event_type)}/{quote(state_key)}", content)


def send_event(room_id: str, event_type: str, txn_id: str, content: dict[str, Any]) -> Request:
    return Request("PUT", f"{_room(room_id)}/send/{quote(event_type)}/{quote(txn_id)}", content)


def redact(room_id: str, event_id: str, txn_id: str, reason: str) -> Request:
    return Request("PUT", f"{_room(room_id)}/redact/{quote(event_id)}/{quote(txn_id)}", {"reason": reason})


def typing(room_id: str, user_id: str, active: bool, timeout_ms: int) -> Request:
    body: dict[str, Any] = {"typing": active}
    if active:
        body["timeout"] = timeout_ms
    return Request("PUT", f"{_room(room_id)}/typing/{quote(user_id)}", body)


def read_receipt(room_id: str, event_id: str) -> Request:
    return Request("POST", f"{_room(room_id)}/receipt/m.read/{quote(event_id)}", {})


# ---- media -------------------------------------------------------------------------------------------
def media_download_path(server: str, media_id: str) -> str:
    return f"/_matrix/client/v1/media/download/{quote(server)}/{quote(media_id)}"
