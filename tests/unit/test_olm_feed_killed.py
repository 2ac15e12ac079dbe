"""A bridge killed while a puppet takes an officer's room key loses nothing: the same message handed over again
after the restart gives the key (matrix/crypto.py ``Crypto._receive``).

Decrypting an Olm message uses up its message key: nio stores the advanced Olm session (and, for a first message,
the account without the one-time key it took) before it stores the room key the message carried. A bridge killed
between those writes could never decrypt that message again, and every officer message under the key was lost
for good (bench/kill_loop.py: all six replies of one chat, in CI and in 1 of 60 reduced runs). Real nio and
vodozemac on both sides, real SQLite stores, and a real SIGKILL of a real process at the worst moment: the room
key's write."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.crypto import OlmDevice, OutboundGroupSession

from bridge.matrix.crypto import Crypto, _sync_response
from bridge.matrix.homeserver import MEGOLM_ALGORITHM, HomeserverApi
from bridge.store import Store

PUPPET, PUPPET_DEVICE = "@webchat_k:localhost", "PRECINCTK"
OFFICER, OFFICER_DEVICE = "@officer:localhost", "OFFICERDEV"
ROOM = "!chat:localhost"
PICKLE = "pickle-key-0123456789"
NOWHERE = "http://127.0.0.1:9"          # no homeserver: the key upkeep after a feed fails and is only logged


async def flushed() -> None:
    """No WAL to flush before a homeserver request: there is no homeserver here."""


def open_crypto(dir: Path) -> tuple[Store, Crypto]:
    store = Store.open(dir / "bridge.db")
    api = HomeserverApi(NOWHERE, "as-token", "precinct", durable=flushed)
    return store, Crypto(api, NOWHERE, dir / "crypto", PICKLE, store.puppets)


def transaction(event: dict[str, Any]) -> dict[str, Any]:
    """An appservice transaction carrying one to-device message for the puppet's device."""
    return {"events": [], "de.sorunome.msc2409.to_device": [
        {**event, "to_user_id": PUPPET, "to_device_id": PUPPET_DEVICE}]}


def child(dir: str) -> None:
    """The bridge's process: takes the stored message and is killed as nio writes the room key it carried."""
    from bridge.matrix.crypto import PuppetStore

    def killed(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)
    PuppetStore.save_inbound_group_session = killed            # type: ignore[method-assign]

    async def feed() -> None:
        store, crypto = open_crypto(Path(dir))
        event = json.loads((Path(dir) / "message.json").read_text())
        await crypto.feed_transaction(transaction(event), lambda user_id: user_id == PUPPET)
    asyncio.run(feed())


def officer_client(dir: Path) -> nio.AsyncClient:
    dir.mkdir()
    client = nio.AsyncClient(NOWHERE, OFFICER, device_id=OFFICER_DEVICE, store_path=str(dir),
                             config=nio.AsyncClientConfig(encryption_enabled=True))
    client.restore_login(OFFICER, OFFICER_DEVICE, "officer-token")
    return client


def device(user_id: str, device_id: str, keys: dict[str, str]) -> OlmDevice:
    return OlmDevice(user_id, device_id, {"ed25519": keys["ed25519"], "curve25519": keys["curve25519"]})


def olm_event(sender: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "m.room.encrypted", "sender": sender, "content": content}


async def officers_room_key(dir: Path, officer_first: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The officer's room key as an Olm message to the puppet's device, and a message encrypted under it.

    ``officer_first``: the officer opens the Olm session (a pre-key message taking one of the puppet's one-time
    keys); otherwise the puppet opened it (sharing its own room key) and the officer's is a normal message."""
    store, crypto = open_crypto(dir)
    store.puppets.add(PUPPET, PUPPET_DEVICE, "chat-1")
    officer = officer_client(dir / "officer")
    try:
        puppet = await crypto.client(PUPPET)
        assert puppet.olm and officer.olm
        puppet_device = device(PUPPET, PUPPET_DEVICE, puppet.olm.account.identity_keys)
        officer_device = device(OFFICER, OFFICER_DEVICE, officer.olm.account.identity_keys)
        if officer_first:
            puppet.olm.account.generate_one_time_keys(1)
            one_time_key = next(iter(puppet.olm.account.one_time_keys["curve25519"].values()))
            puppet.olm.account.mark_keys_as_published()
            puppet.olm.save_account()
            session = officer.olm.create_session(one_time_key, puppet_device.curve25519)
        else:
            officer.olm.account.generate_one_time_keys(1)
            one_time_key = next(iter(officer.olm.account.one_time_keys["curve25519"].values()))
            officer.olm.account.mark_keys_as_published()
            opened = puppet.olm.create_session(one_time_key, officer_device.curve25519)
            first = puppet.olm._olm_encrypt(opened, officer_device, "m.dummy", {})
            await officer.receive_response(_sync_response({"to_device": {"events": [olm_event(PUPPET, first)]}}))
            session = officer.olm.session_store.get(puppet_device.curve25519)
            assert session is not None, "the officer took the puppet's first message"
        group = OutboundGroupSession()
        key = {"algorithm": MEGOLM_ALGORITHM, "room_id": ROOM, "session_id": group.id,
               "session_key": group.session_key}
        message = officer.olm._olm_encrypt(session, puppet_device, "m.room_key", key)
        assert message["ciphertext"][puppet_device.curve25519]["type"] == (0 if officer_first else 1)
        group.mark_as_shared()
        plaintext = {"type": "m.room.message", "room_id": ROOM, "content": {"msgtype": "m.text", "body": "reply 1"}}
        reply = {"type": "m.room.encrypted", "room_id": ROOM, "event_id": "$reply1", "sender": OFFICER,
                 "origin_server_ts": 1, "content": {
                     "algorithm": MEGOLM_ALGORITHM, "sender_key": officer_device.curve25519,
                     "device_id": OFFICER_DEVICE, "session_id": group.id,
                     "ciphertext": group.encrypt(json.dumps(plaintext))}}
        return olm_event(OFFICER, message), reply
    finally:
        await officer.close()
        await crypto.close()
        store.close()


@pytest.mark.parametrize("officer_first", [True, False], ids=["officer-opened-session", "puppet-opened-session"])
async def test_a_room_key_whose_write_was_killed_is_taken_when_the_message_comes_again(tmp_path, officer_first):
    message, reply = await officers_room_key(tmp_path, officer_first)
    (tmp_path / "message.json").write_text(json.dumps(message))
    root = Path(__file__).parents[2]
    killed = subprocess.run([sys.executable, __file__, str(tmp_path)], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]     # killed at the room key's write

    # The restarted bridge: the transaction was not marked processed, so it is fed again.
    store, crypto = open_crypto(tmp_path)
    try:
        await crypto.feed_transaction(transaction(message), lambda user_id: user_id == PUPPET)
        decrypted = await crypto.decrypt(PUPPET, reply)
        assert decrypted is not None, "the officer's room key was lost with the killed process"
        assert decrypted["content"]["body"] == "reply 1"
    finally:
        await crypto.close()
        store.close()


if __name__ == "__main__":
    child(sys.argv[1])
