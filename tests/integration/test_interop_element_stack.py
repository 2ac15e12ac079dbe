"""Interop with the officers' real client stack: matrix-js-sdk with its Rust crypto (what Element runs).

The officer decrypts a visitor's message and its crypto reports **no warning shield**: the
puppet's device is signed by the puppet's own cross-signing identity.  Without that, Element
marks every visitor message red ("encrypted by a device not verified by its owner").
"""
from __future__ import annotations

import uuid

from tests.conftest import PASSWORD, MatrixEnv
from tests.interop.officer_client import SHIELD_NONE, JsOfficer, prerequisites_missing
from tests.support.bridge_db import dispatch_room_of, record_of, room_of
from tests.support.visitor import Visitor


async def test_element_stack_officer_sees_no_shield_and_reply_reaches_visitor(matrix_env: MatrixEnv, bridge_log):
    missing = prerequisites_missing()
    assert missing is None, missing          # `make test` installs node_modules; a missing one is a failure
    visitor = Visitor(matrix_env.public_url)
    officer = JsOfficer(matrix_env.synapse.url, matrix_env.officer_id("interop"), PASSWORD)
    try:
        await officer.start()
        dispatch = await dispatch_room_of(matrix_env.db_path, "interop")
        await officer.wait_for(lambda e: e["event"] == "joined" and e["room_id"] == dispatch, timeout=90)
        created = await visitor.create(topic="interop", display_name="Jo")
        await visitor.connect()
        await officer.send(dispatch, f"!claim {created['number']}")       # nobody is invited before a claim
        room_id = await room_of(matrix_env.db_path, visitor.chat_id)      # a silent chat's room comes with it
        await officer.wait_for(lambda e: e["event"] == "joined" and e["room_id"] == room_id, timeout=90)
        marker = f"Someone took my bike {uuid.uuid4().hex[:8]}"
        await visitor.send(marker)
        msg = await officer.wait_for(lambda e: e["event"] == "message" and e["body"] == marker, timeout=90)
        assert msg["sender"].startswith("@webchat_")
        # The shield Element settles on once it has the sender's devices (at the instant of
        # decryption it may still read UNKNOWN_DEVICE while the device list downloads).
        shield = await officer.shield(room_id, msg["event_id"])
        assert shield["shield_colour"] == SHIELD_NONE, (shield["shield_colour"], shield["shield_reason"])
        assert shield["sender_device_id"] and shield["sender_device_id"].startswith("PRECINCT")
        reply = f"We can help with that {uuid.uuid4().hex[:8]}"
        await officer.send(room_id, reply)
        frame = await visitor.wait_frame(lambda f: f.get("body") == reply, 90, "Element-stack reply at visitor")
        assert frame["from"] == "officer"
        # The chat's record names the Element-stack device that encrypted the reply.
        said = next(e for e in record_of(matrix_env.dir / "precinct.db", visitor.chat_id)
                    if e["kind"] == "message.officer" and (e["content"] or {}).get("body") == reply)
        assert said["actor"] == matrix_env.officer_id("interop") and said["details"]["device"] == officer.device_id
    finally:
        await visitor.close()
        await officer.stop()
