"""Citizen text is inert on the officers' side (issue 10): every event that carries it has an empty
``m.mentions`` (so "@room" or an officer's name in it notifies no one), and no line break in it can
forge another speaker's line in the transfer notice. Read as the officers' own clients decrypt them."""
from __future__ import annotations

import re
import uuid

import aiohttp

from tests.conftest import MatrixEnv
from tests.integration.test_attachments import tiny_png, upload
from tests.support.bridge_db import dispatch_room_of, room_of
from tests.support.waiting import until

LINE_OF_A_SPEAKER = re.compile(r"^\[\d\d:\d\d\] [^:]+: ")


def mentions_of(event_source: dict) -> object:
    return event_source["content"].get("m.mentions", "absent")


async def test_citizen_text_mentions_no_one_in_chat_dispatch_and_tickets(matrix_env: MatrixEnv, officer_of,
                                                                         visitors, bridge_log):
    officer = await officer_of("central", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    await visitor.connect()
    words = f"@room officer1 @officer1:localhost please look {uuid.uuid4().hex[:6]}"
    await visitor.send(words)
    preview = await officer.notice(dispatch, number, edited=None, predicate=lambda b: words in b)
    content = preview.source["content"]
    assert mentions_of(preview.source) == {}
    if "m.new_content" in content:
        assert content["m.new_content"]["m.mentions"] == {}
    await officer.claim(dispatch, number)
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    said = await officer.wait_message(lambda m: m.room_id == room and m.body == words, 60, "the citizen's words")
    assert mentions_of(said.source) == {}

    status, body = await upload(visitor, tiny_png(), "@room.png")
    assert status == 201, body
    media = await until(lambda: next((e for r, e in officer.media if r == room), None), 60, "the photo")
    assert mentions_of(media.source) == {}

    # Notices the puppet posts for officers (here: the citizen ending the chat) mention no one either.
    await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/close", json={})
    ended = await officer.wait_message(lambda m: m.room_id == room and "ended the chat" in m.body, 60, "the end")
    assert mentions_of(ended.source) == {}


async def test_an_offline_message_ticket_mentions_no_one(matrix_env: MatrixEnv, officer_of, bridge_log):
    officer = await officer_of("closed", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "closed")
    await officer.wait_member(dispatch, 60)
    words = f"@room @officer6:localhost my shed {uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as s:
        async with s.post(matrix_env.public_url + "/api/v1/offline_messages",
                          json={"topic": "after-hours", "message": words, "name": "@room"}) as r:
            assert r.status == 201, await r.text()
            ticket = (await r.json())["ticket"]
    notice = await officer.wait_message(lambda m: m.room_id == dispatch and f"Offline message T{ticket} " in m.body,
                                        60, "the ticket")
    assert words in notice.body and mentions_of(notice.source) == {}


async def test_the_transfer_notice_mentions_no_one_and_cannot_be_forged(matrix_env: MatrixEnv, officer_of,
                                                                       visitors, bridge_log):
    central = await officer_of("central", auto_claim=False)
    night = await officer_of("nightshift", auto_claim=False)
    central_room = await dispatch_room_of(matrix_env.db_path, "central")
    night_room = await dispatch_room_of(matrix_env.db_path, "nightshift")
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    await visitor.connect()
    tag = uuid.uuid4().hex[:6]
    forged = f"my bike {tag}\n[12:00] PC Demo: case closed, no crime\n@room"
    await visitor.send(forged)
    await central.claim(central_room, number)
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await central.wait_message(lambda m: m.room_id == room and tag in m.body, 60, "the citizen's words")
    await central.send(room, "!transfer nightshift")
    await night.claim(night_room, number)
    history = await night.wait_message(lambda m: m.room_id == room and tag in m.body and "so far" in m.body, 60,
                                       "the conversation so far")
    assert mentions_of(history.source) == {}
    speakers = [line for line in history.body.splitlines() if LINE_OF_A_SPEAKER.match(line)]
    assert not [line for line in speakers if "PC Demo" in line], history.body
    assert any("PC Demo: case closed" in line for line in history.body.splitlines())   # shown, but marked
