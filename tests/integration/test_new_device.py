"""A new officer device reads the queue (issue 10): the dispatch notices sent after the sign-in decrypt.

Element signs in (the homeserver now has the device) and only then starts its crypto and uploads
the device's keys. A notice the bot sends in between is encrypted for the devices it can see, which
do not include the new one. The bot hears of the device a moment later (a device-list change in an
appservice transaction); it must then give that device the key of the notice it just sent, or the
notice stays undecryptable there for good (its later edits, under a new key, would decrypt).
"""
from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, SERVER, MatrixEnv
from tests.interop.officer_client import JsOfficer, prerequisites_missing
from tests.support.bridge_db import dispatch_notice_of, dispatch_room_of
from tests.support.agencies import OwnAgency
from tests.support.officer import NioOfficer
from tests.support.waiting import until


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


async def test_bot_reply_in_a_direct_room_decrypts_on_a_device_signed_in_just_before(matrix_env: MatrixEnv, officer_of,
                                                                                   tmp_path, bridge_log):
    """The same for the bot's direct rooms, with nio officers (Element-like, on matrix-nio)."""
    bot = f"@precinct:{SERVER}"
    desk = await officer_of("nightshift", auto_claim=False)
    laptop = NioOfficer(matrix_env.synapse.url, matrix_env.officer_id("nightshift"), PASSWORD, tmp_path / "laptop")
    try:
        room = await desk.create_room_with(bot)

        def from_bot() -> list:
            return [m for m in desk.messages if m.room_id == room and m.sender == bot]
        await until(from_bot, 60, "the bot's greeting in the direct room")
        await laptop.sign_in()                 # the device exists, its keys are not uploaded yet
        await desk.send(room, "!help")
        reply = (await until(lambda: from_bot()[1:], 60, "the bot's answer to !help"))[0]
        await laptop.start()                   # keys uploaded, first sync
        got = await laptop.wait_message(lambda m: m.event_id == reply.event_id, 60, "the answer on the new device")
        assert got.body == reply.body
    finally:
        await laptop.stop()


@pytest.mark.agency(officers=2)
async def test_notice_decrypts_for_an_officer_invited_but_not_joined_who_signed_in_since_the_last_one(
        agency: OwnAgency, matrix_env: MatrixEnv, officer_of, visitors, tmp_path, bridge_log):
    """The bot asks joined members for their devices at most once a minute, since the homeserver's push tells of
    their new devices at once; it tells of nobody's who is only invited, and those are asked at most every
    crypto.INVITED_FRESH_S. An officer invited to the dispatch room who signs in between two notices must still be
    given the second one's key, while still only invited (the bot asks again after a send that did not ask, even
    if it sends nothing more), and read the notice once they join."""
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    desk = await officer_of(agency.officers[0], auto_claim=False)
    first = visitors()
    number = (await first.create(topic=agency.topic))["number"]
    await desk.notice(dispatch, number)                     # the bot has just asked its members for their devices
    late = NioOfficer(matrix_env.synapse.url, agency.officers[1], PASSWORD, tmp_path / "late")
    late.auto_join = lambda room_id: False                  # invited to the dispatch room since it was made
    try:
        await late.start()                                  # a new device, its keys uploaded
        second = visitors()
        number = (await second.create(topic=agency.topic))["number"]
        notice = await dispatch_notice_of(matrix_env.db_path, second.chat_id)
        olm = late.client.olm
        assert olm is not None
        await until(lambda: [s for s in olm.inbound_group_store if s.room_id == dispatch], 60,
                    "a room key of the dispatch room on the invited officer's new device, before joining")
        await late._join(dispatch)
        got = await late.wait_message(lambda m: m.event_id == notice, 60, "the second notice on the new device")
        assert f"Chat {number} ·" in got.body
    finally:
        await late.stop()
