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
import pytest
import vodozemac
from aiohttp import web
from aiohttp.test_utils import TestServer
from nio.crypto import OlmDevice
from nio.crypto.key_request import OutgoingKeyRequest
from nio.store import SqliteMemoryStore

from bridge import metrics
from bridge.chats.inbound import ASK_SENDER_AFTER_MS, KeyWait
from bridge.matrix.crypto import Crypto, CryptoError
from bridge.matrix.homeserver import MEGOLM_ALGORITHM, HomeserverApi, SenderForwardedKeys
from bridge.store import Store

PUPPET, PUPPET_DEVICE = "@webchat_q:police.example", "PRECINCTQ"
OFFICER, ROOM, SESSION = "@o1:police.example", "!chat:police.example", "S" * 43


class KeysNeverCome:
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
    crypto = KeysNeverCome()
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
    failing = KeyWait(store, KeysNeverCome(fail=True), 60)  # type: ignore[arg-type]
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


async def test_the_request_goes_to_every_device_of_the_sender_once_per_session_even_after_a_restart(tmp_path):
    """What Crypto.request_room_key sends, through the real loading of the puppet's client and a stand-in for the
    homeserver's sendToDevice endpoint (that Element answers it is shown in test_key_delivery)."""
    sent: list[tuple[str, dict]] = []
    answer = {"status": 200}

    async def send_to_device(request: web.Request) -> web.Response:
        sent.append((request.match_info["type"], await request.json()))
        if answer["status"] != 200:
            return web.json_response({"errcode": "M_UNKNOWN", "error": "away"}, status=answer["status"])
        return web.json_response({})
    app = web.Application()
    app.router.add_put("/_matrix/client/v3/sendToDevice/{type}/{txn}", send_to_device)
    server = TestServer(app)
    await server.start_server()
    store = Store.open(tmp_path / "p.db")
    store.puppets.add(PUPPET, PUPPET_DEVICE)

    async def durable() -> None:
        """Nothing of the bridge's store to flush here."""

    async def started() -> tuple[Crypto, HomeserverApi]:
        api = HomeserverApi(str(server.make_url("")).rstrip("/"), "as-token", "precinct", durable=durable)
        await api.start()
        return Crypto(api, api.base_url, tmp_path / "crypto", "k" * 32, store.puppets), api

    event = {"type": "m.room.encrypted", "event_id": "$lost", "room_id": ROOM, "sender": OFFICER,
             "origin_server_ts": 1, "content": {"algorithm": MEGOLM_ALGORITHM, "sender_key": "K" * 43,
                                                "device_id": "ELEMENT", "session_id": SESSION, "ciphertext": "AwgA"}}
    try:
        crypto, api = await started()
        assert await crypto.request_room_key(PUPPET, event)
        [(kind, body)] = sent
        assert kind == "m.room_key_request"
        # To every device of the sender: the event's device_id is deprecated, and the key may be on another.
        [(user, devices)] = body["messages"].items()
        assert user == OFFICER and list(devices) == ["*"]
        content = devices["*"]
        assert content["action"] == "request" and content["requesting_device_id"] == PUPPET_DEVICE
        assert content["body"] == {"algorithm": MEGOLM_ALGORITHM, "room_id": ROOM, "session_id": SESSION,
                                   "sender_key": "K" * 43}
        # Once per session: the same key is not asked for again, by this client nor after a restart.
        assert not await crypto.request_room_key(PUPPET, {**event, "event_id": "$also-lost"})
        await crypto.unload(PUPPET)
        await api.close()
        crypto, api = await started()
        assert not await crypto.request_room_key(PUPPET, event)
        assert len(sent) == 1
        # A request the homeserver refused is not counted as made, and is not made twice over: it waits in the
        # client's queue for its next upkeep.
        answer["status"] = 500
        other = {**event, "event_id": "$other", "content": {**event["content"], "session_id": "T" * 43}}
        with pytest.raises(CryptoError):
            await crypto.request_room_key(PUPPET, other)
        assert not await crypto.request_room_key(PUPPET, other)
        assert [b["messages"][OFFICER]["*"]["body"]["session_id"] for _, b in sent[1:]] == ["T" * 43]
        await crypto.unload(PUPPET)
        await api.close()
    finally:
        store.close()
        await server.close()
