"""A room key that never reached a puppet or the bot is asked of its sender (bridge/chats/inbound.py ``KeyWait``,
matrix/crypto.py ``Crypto.request_room_key``), and the answer is taken only from the device that made the session
(matrix/homeserver.py ``SenderForwardedKeys``). The whole way through Synapse and Element's crypto:
tests/integration/test_key_delivery.py::test_a_room_key_lost_on_the_way_is_asked_of_the_officers_element_device."""
from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import nio
import vodozemac
from nio.crypto import OlmDevice
from nio.crypto.key_request import OutgoingKeyRequest
from nio.store import SqliteMemoryStore

from bridge import metrics
from bridge.chats.inbound import ASK_SENDER_AFTER_MS, KeyWait
from bridge.matrix.homeserver import MEGOLM_ALGORITHM, SenderForwardedKeys
from bridge.store import Store

PUPPET, PUPPET_DEVICE = "@webchat_q:police.example", "PRECINCTQ"
OFFICER, ROOM, SESSION = "@o1:police.example", "!chat:police.example", "S" * 43


class Crypto:
    """The two calls KeyWait makes: the key never comes; asking is counted (or fails, when told to)."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[str] = []
        self.fail = fail

    async def decrypt(self, user_id: str, event: dict[str, Any]) -> None:
        return None

    async def request_room_key(self, user_id: str, event: dict[str, Any]) -> bool:
        if self.fail:
            raise nio.LocalProtocolError("the homeserver is away")
        self.asked.append(event["event_id"])
        return True


def _waiting(store: Store, received_ms_ago: int) -> Any:
    event = {"type": "m.room.encrypted", "event_id": f"$e{received_ms_ago}", "room_id": ROOM, "sender": OFFICER,
             "origin_server_ts": 1, "content": {"algorithm": MEGOLM_ALGORITHM, "session_id": SESSION}}
    store.room_events.add(event)
    store.db.execute("UPDATE room_events SET received_ts = ? WHERE event_id = ?",
                     [int(time.time() * 1000) - received_ms_ago, event["event_id"]])
    return next(e for e in store.room_events.pending(ROOM) if e.event_id == event["event_id"])


async def test_a_missing_key_is_asked_of_its_sender_once_it_has_waited_a_while(tmp_path, caplog):
    store = Store.open(tmp_path / "p.db")
    crypto = Crypto()
    keys = KeyWait(store, crypto, 60)  # type: ignore[arg-type]
    keys.started_ms = 0
    # Just received: a key is usually a moment behind its message, so nobody is asked yet.
    fresh = await keys.decrypt(PUPPET, _waiting(store, 100))
    assert fresh.event is None and not fresh.give_up and crypto.asked == []
    # Missing for longer: asked (Crypto keeps it to once a session), and counted; the wait for the key goes on.
    requests = metrics.REGISTRY.get_sample_value("precinct_room_key_requests_total") or 0
    late = _waiting(store, ASK_SENDER_AFTER_MS + 1000)
    result = await keys.decrypt(PUPPET, late)
    assert result.event is None and not result.give_up and crypto.asked == [late.event_id]
    assert metrics.REGISTRY.get_sample_value("precinct_room_key_requests_total") == requests + 1
    # A request that cannot be sent is logged, and the event waits as before: no crash, nothing lost.
    failing = KeyWait(store, Crypto(fail=True), 60)  # type: ignore[arg-type]
    failing.started_ms = 0
    with caplog.at_level(logging.WARNING):
        result = await failing.decrypt(PUPPET, late)
    assert result.event is None and not result.give_up
    assert any("could not ask" in r.getMessage() and late.event_id in r.getMessage() for r in caplog.records)
    assert metrics.REGISTRY.get_sample_value("precinct_room_key_requests_total") == requests + 1
    store.close()


def _machine() -> SenderForwardedKeys:
    return SenderForwardedKeys(PUPPET, PUPPET_DEVICE, SqliteMemoryStore(PUPPET, PUPPET_DEVICE, "pickle"))


def _device(user_id: str, device_id: str) -> tuple[OlmDevice, vodozemac.Account]:
    account = vodozemac.Account()
    keys = {"ed25519": account.ed25519_key.to_base64(), "curve25519": account.curve25519_key.to_base64()}
    return OlmDevice(user_id, device_id, keys), account


def _forward(by: OlmDevice, creator: OlmDevice, room_id: str = ROOM, chain: list[str] | None = None,
             claimed_ed25519: str | None = None) -> tuple[str, str, nio.ForwardedRoomKeyEvent]:
    """(sender, sender's Curve25519 key, event) as nio's Olm layer hands them to ``_should_accept_forward``."""
    payload = {"type": "m.forwarded_room_key", "sender": by.user_id, "keys": {"ed25519": by.ed25519},
               "content": {"algorithm": MEGOLM_ALGORITHM, "room_id": room_id, "session_id": SESSION,
                           "session_key": "AQ", "sender_key": creator.curve25519,
                           "sender_claimed_ed25519_key": claimed_ed25519 or creator.ed25519,
                           "forwarding_curve25519_key_chain": chain or []}}
    event = nio.ForwardedRoomKeyEvent.from_dict(payload, by.user_id, by.curve25519)
    assert isinstance(event, nio.ForwardedRoomKeyEvent), event
    return by.user_id, by.curve25519, event


def test_a_forwarded_key_is_taken_only_from_the_device_that_made_the_session_and_only_when_asked():
    olm = _machine()
    creator, _ = _device(OFFICER, "ELEMENT")
    other_device, _ = _device(OFFICER, "PHONE")                 # the same officer's other device
    stranger, _ = _device("@someone:police.example", "EVIL")
    for device in (creator, other_device, stranger):
        olm.device_store.add(device)
    # Not asked for: refused, even from the session's own device.
    assert not olm._should_accept_forward(*_forward(creator, creator))
    olm.outgoing_key_requests[SESSION] = OutgoingKeyRequest(SESSION, SESSION, ROOM, MEGOLM_ALGORITHM)
    # Asked for, and forwarded by the device that made it: taken (it vouches for its own session, as in m.room_key).
    assert olm._should_accept_forward(*_forward(creator, creator))
    # Anyone else's forward of that session is refused: another device (even the officer's own), another user,
    # a chain of forwarders, a claimed signing key that is not the device's, a session of another room.
    assert not olm._should_accept_forward(*_forward(other_device, creator))
    assert not olm._should_accept_forward(*_forward(stranger, creator))
    assert not olm._should_accept_forward(*_forward(creator, creator, chain=[stranger.curve25519]))
    assert not olm._should_accept_forward(*_forward(creator, creator, claimed_ed25519=stranger.ed25519))
    assert not olm._should_accept_forward(*_forward(creator, creator, room_id="!other:police.example"))
    # A forwarding device the puppet does not know (its keys never queried): refused.
    unknown, _ = _device(OFFICER, "NEW")
    assert not olm._should_accept_forward(*_forward(unknown, unknown))
