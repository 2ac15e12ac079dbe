"""A room key that comes late (issue 13, "late room key"): an officer's client sends a message but holds
back the puppet's copy of the new room key, then shares it a moment later. The message reaches the citizen
exactly once when the key arrives; nobody is asked to send it again (that waits for
``crypto.undecryptable_wait_seconds``, here 6 s, and the key came before); the citizen never sees
ciphertext or an error. The key giving up for good is tests/integration/test_conversation.py's
``test_undecryptable_officer_message_asks_the_officer_to_resend``."""
from __future__ import annotations

import time
import uuid

import nio

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.bridge_db import rows
from tests.support.configs import UNDECRYPTABLE_WAIT_SECONDS
from tests.support.waiting import until


def first_failed(env: MatrixEnv, event_id: str) -> int | None:
    """When the bridge first failed to decrypt this event (None: not yet tried, or decrypted at once)."""
    found = rows(env.db_path, "SELECT first_failed_ts FROM room_events WHERE event_id = ?", [event_id])
    return found[0][0] if found else None


async def test_a_late_room_key_delivers_the_message_once_and_nobody_is_asked_to_resend(
        matrix_env: MatrixEnv, officer_of, visitors, bridge_log):
    officer = await officer_of("central")
    visitor = visitors()
    got = await open_chat(visitor, officer)
    room, puppet = got.room_id, got.sender

    olm, withheld = officer.client.olm, []
    shares = olm.share_group_session_parallel

    def holding_back_the_puppets_key(*args, **kwargs):  # type: ignore[no-untyped-def]
        for sharing_with, to_device in shares(*args, **kwargs):
            withheld.extend((puppet, device, content)
                            for device, content in to_device["messages"].get(puppet, {}).items())
            yield sharing_with, {"messages": {u: d for u, d in to_device["messages"].items() if u != puppet}}
    olm.share_group_session_parallel = holding_back_the_puppets_key
    try:
        officer.client.invalidate_outbound_session(room)            # a new room key, held back from the puppet
        text = f"sent before its key {uuid.uuid4().hex[:6]}"
        event_id = await officer.send(room, text)
    finally:
        del olm.share_group_session_parallel
    assert withheld, "the puppet's copy of the room key was never made"

    failed_at = await until(lambda: first_failed(matrix_env, event_id), 60, "the bridge failing to decrypt it")
    for user, device, content in withheld:                           # the key, late
        resp = await officer.client.to_device(nio.ToDeviceMessage("m.room.encrypted", user, device, content))
        assert isinstance(resp, nio.ToDeviceResponse), resp
    await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == text, 60,
                             "the message once its key came")

    # Past the moment the bridge would have given up, a later message still comes after it, in order …
    await until(lambda: time.time() * 1000 > failed_at + (UNDECRYPTABLE_WAIT_SECONDS + 1) * 1000, 30,
                "the end of the key wait")
    await officer.send(room, "and the next one")
    await visitor.wait_frame(lambda f: f.get("body") == "and the next one", 60, "the message after it")
    # … the citizen saw it once and nothing else of it, and nobody was asked to send it again.
    bodies = [f["body"] for f in visitor.messages() if f["from"] == "officer"]
    assert bodies.count(text) == 1 and bodies[-2:] == [text, "and the next one"]
    assert not any("send it again" in m.body for m in officer.messages if m.room_id == room)
    assert not any("error" in f.get("body", "").lower() or f.get("kind") == "encrypted" for f in visitor.messages())
