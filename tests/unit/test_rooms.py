"""Chat rooms' creation bodies: encrypted from the first event, officers (every other member) with power 50."""
from __future__ import annotations

import pytest

from bridge.matrix.rooms import ROOM_TOPIC, chat_room_request, creator_has_implicit_power, pool_room_request

BOT = "@precinct:police.example"
CREATOR = "@webchat_0a1b:police.example"
OFFICERS = ["@officer1:police.example", "@officer2:police.example"]


def request(room_version: str = "10", officers: list[str] | None = None) -> dict:
    return chat_room_request("Chat 1001 — General enquiry", OFFICERS if officers is None else officers, BOT,
                             CREATOR, room_version)


def state(body: dict, event_type: str) -> dict:
    matches = [e for e in body["initial_state"] if e["type"] == event_type]
    assert len(matches) == 1, event_type
    return matches[0]


@pytest.mark.parametrize("version", ["1", "10", "11", "12", "13"])
def test_encrypted_from_creation(version: str):
    encryption = state(request(version), "m.room.encryption")
    assert encryption["state_key"] == ""
    assert encryption["content"]["algorithm"] == "m.megolm.v1.aes-sha2"


def test_private_and_not_for_guests():
    body = request()
    assert body["preset"] == "private_chat"
    assert state(body, "m.room.guest_access")["content"] == {"guest_access": "forbidden"}
    # Officers invited when they take the chat can read what the citizen wrote while waiting.
    assert state(body, "m.room.history_visibility")["content"] == {"history_visibility": "shared"}
    assert body["name"] == "Chat 1001 — General enquiry"
    assert body["topic"] == ROOM_TOPIC


def test_officers_invited_with_power_50_and_bot_100():
    body = request()
    assert body["invite"] == OFFICERS
    levels = body["power_level_content_override"]
    assert levels["users"][BOT] == 100
    # Only invited officers can join, so every member but the bridge gets officer power by default:
    # a room made ahead for the pool needs no power-levels change when it is given to a chat.
    assert levels["users_default"] == 50
    # Officers (50) may invite colleagues, kick, ban and redact; everyone may send messages.
    assert levels["events_default"] == 0
    for action in ("invite", "kick", "ban", "redact", "state_default"):
        assert levels[action] == 50, action


@pytest.mark.parametrize("version", ["1", "9", "10", "11"])
def test_creator_listed_before_room_version_12(version: str):
    users = request(version)["power_level_content_override"]["users"]
    assert users == {BOT: 100, CREATOR: 100}
    assert not creator_has_implicit_power(version)


@pytest.mark.parametrize("version", ["12", "13", "20"])
def test_creator_not_listed_from_room_version_12(version: str):
    users = request(version)["power_level_content_override"]["users"]
    assert users == {BOT: 100}
    assert creator_has_implicit_power(version)


def test_pool_room_is_the_same_room_without_name_or_invites():
    pool, chat = pool_room_request(BOT, CREATOR, "12"), request("12")
    assert "invite" not in pool and "name" not in pool
    assert pool["initial_state"] == chat["initial_state"]
    assert pool["power_level_content_override"] == chat["power_level_content_override"]
    assert pool["topic"] == chat["topic"] and pool["preset"] == chat["preset"]
