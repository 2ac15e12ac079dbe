"""A new officer device reads the queue (issue 10): the dispatch notices sent after the sign-in decrypt.

Element signs in (the homeserver now has the device) and only then starts its crypto and uploads
the device's keys. A notice the bot sends in between is encrypted for the devices it can see, which
do not include the new one. The bot hears of the device a moment later (a device-list change in an
appservice transaction); it must then give that device the key of the notice it just sent, or the
notice stays undecryptable there for good (its later edits, under a new key, would decrypt).
"""
from __future__ import annotations

from tests.conftest import PASSWORD, MatrixEnv
from tests.interop.officer_client import JsOfficer, prerequisites_missing
from tests.support.bridge_db import dispatch_notice_of, dispatch_room_of


async def test_notice_sent_between_sign_in_and_device_keys_decrypts_on_the_new_device(matrix_env: MatrixEnv,
                                                                                     visitors, bridge_log):
    missing = prerequisites_missing()
    assert missing is None, missing
    user = matrix_env.officer_id("interop")
    dispatch = await dispatch_room_of(matrix_env.db_path, "interop")
    # The officer already works here from another device (the desk PC), so is a member of the room.
    desk = JsOfficer(matrix_env.synapse.url, user, PASSWORD)
    laptop = JsOfficer(matrix_env.synapse.url, user, PASSWORD, hold_after_login=True)
    try:
        await desk.start()
        await desk.wait_for(lambda e: e["event"] == "joined" and e["room_id"] == dispatch, timeout=90)
        await desk.stop()
        await laptop.start()                   # signed in: the device exists, its keys are not uploaded yet
        first = visitors()
        created = await first.create(topic="interop")
        notice = await dispatch_notice_of(matrix_env.db_path, first.chat_id)   # sent before the keys exist
        await laptop.resume()                  # Element's crypto starts: keys uploaded, first sync
        got = await laptop.wait_for(lambda e: e["event"] == "message" and e["event_id"] == notice, timeout=90)
        assert f"Chat {created['number']} ·" in got["body"]
        # A chat queued just after the device became visible: its notice decrypts too.
        second = visitors()
        created = await second.create(topic="interop")
        notice = await dispatch_notice_of(matrix_env.db_path, second.chat_id)
        got = await laptop.wait_for(lambda e: e["event"] == "message" and e["event_id"] == notice, timeout=90)
        assert f"Chat {created['number']} ·" in got["body"]
    finally:
        await desk.stop()
        await laptop.stop()
