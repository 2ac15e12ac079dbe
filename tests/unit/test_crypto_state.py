"""What room state the puppets' nio clients are shown (bridge/matrix/crypto.py, ``Crypto.observe``): only
what encryption needs, membership and the room's encryption, and no membership of users who may not hold
room keys. Every other state event (a new room brings eight) once cost nio a sync response to parse."""
from __future__ import annotations

from typing import Any

from bridge.matrix.crypto import Crypto
from bridge.store import Store


def _state(kind: str, key: str = "", **content: Any) -> dict[str, Any]:
    return {"type": kind, "state_key": key, "sender": "@webchat_a:hs", "event_id": f"${kind}{key}",
            "origin_server_ts": 1, "content": content}


def _crypto(tmp_path) -> tuple[Crypto, list]:
    store = Store.open(tmp_path / "db.sqlite")
    crypto = Crypto(None, "http://127.0.0.1:1", tmp_path, "k" * 32, store.puppets,  # type: ignore[arg-type]
                    may_hold_keys=lambda user: user != "@guest:elsewhere")
    shown: list = []

    async def receive(user_id: str, sync: dict) -> None:
        shown.append((user_id, sync))
    crypto._receive = receive  # type: ignore[method-assign]
    return crypto, shown


async def test_a_rooms_full_state_reaches_nio_as_membership_and_encryption_only(tmp_path):
    crypto, _ = _crypto(tmp_path)
    state = [_state("m.room.create", creator="@webchat_a:hs"), _state("m.room.power_levels", users={}),
             _state("m.room.join_rules", join_rule="invite"), _state("m.room.name", name="Chat 1001"),
             _state("m.room.encryption", algorithm="m.megolm.v1.aes-sha2"),
             _state("m.room.member", "@webchat_a:hs", membership="join"),
             _state("m.room.member", "@guest:elsewhere", membership="invite")]
    events = crypto._admitted(state)       # what _ensure_room gives nio of a room's /state
    assert [(e["type"], e["state_key"]) for e in events] == [("m.room.encryption", ""),
                                                             ("m.room.member", "@webchat_a:hs")]


async def test_a_state_event_encryption_does_not_need_costs_a_loaded_client_nothing(tmp_path):
    crypto, shown = _crypto(tmp_path)
    crypto.clients["@webchat_a:hs"] = object()          # loaded; observe must not even reach it
    for event in (_state("m.room.name", name="Chat 1001 (closed)"), _state("m.room.topic", topic="x"),
                  _state("m.room.server_acl", allow=["*"]), _state("m.room.member", "@guest:elsewhere",
                                                                    membership="join")):
        await crypto.observe("@webchat_a:hs", "!room:hs", [event])
    assert shown == []
    await crypto.observe("@webchat_a:hs", "!room:hs", [_state("m.room.member", "@webchat_a:hs", membership="leave")])
    assert len(shown) == 1
