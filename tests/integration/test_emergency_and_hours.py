"""Emergency words (banner, priority, front of the queue, supervisors alerted) and offline messages."""
from __future__ import annotations

import aiohttp
import pytest

from bridge.chats import notices
from tests.conftest import SERGEANT, SERVER
from tests.support.bridge_db import dispatch_room_of
from tests.support.visitor import Visitor


async def position(visitor: Visitor) -> int:
    status, body = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}")
    assert status == 200, body
    return body["position"]


@pytest.mark.agency(supervisors=[f"@{SERGEANT}:{SERVER}"], emergency={"en": ["knife", "help me"]})
async def test_emergency_words_banner_priority_front_of_queue_and_alert(matrix_env, agency, officer_of, visitors,
                                                                        bridge_log):
    """In an agency of its own, so the two chats are the whole queue."""
    officer = await officer_of(agency.officers[0], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    earlier, urgent = visitors(), visitors()
    await earlier.create(topic=agency.topic, language="en")
    number = (await urgent.create(topic=agency.topic, language="en"))["number"]
    await urgent.connect()
    assert (await position(earlier), await position(urgent)) == (1, 2)
    status, body = await urgent.http("GET", f"/api/v1/chats/{urgent.chat_id}")
    assert body["emergency"] is False

    await urgent.send("There is a man with a KNIFE outside my door")
    banner = await urgent.wait_frame(lambda f: f.get("from") == "system" and f.get("body") ==
                                     notices.text("emergency", number="999"), 60, "the emergency message")
    assert "999" in banner["body"]
    await urgent.wait_frame(lambda f: f.get("type") == "status" and f.get("emergency") is True, 60,
                            "status with the emergency flag")
    status, body = await urgent.http("GET", f"/api/v1/chats/{urgent.chat_id}")
    assert body["emergency"] is True and body["position"] == 1     # ahead of the chat that came first
    assert await position(earlier) == 2                              # moved back by one: the emergency went first

    alert = await officer.wait_message(lambda m: m.room_id == dispatch and f"Emergency in chat {number}" in m.body,
                                       60, "the emergency alert")
    assert alert.source["content"]["m.mentions"]["user_ids"] == ["@sergeant1:localhost"]
    await officer.notice(dispatch, number, edited=None, predicate=lambda b: b.startswith("🚨 EMERGENCY"))


async def test_words_inside_other_words_are_not_an_emergency(matrix_env, visitors, bridge_log):
    visitor = visitors()
    await visitor.create(topic="general", language="en")
    await visitor.connect()
    await visitor.send("I need a knifesharpener for the help meeting")
    await visitor.send("marker: done")
    await visitor.wait_frame(lambda f: f.get("body") == "marker: done", 30, "the echo of the last message")
    status, body = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}")
    assert body["emergency"] is False


async def test_offline_message_becomes_a_ticket_officers_can_take(matrix_env, officer_of, bridge_log):
    officer = await officer_of("closed", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "closed")
    await officer.wait_member(dispatch, 60)
    url = matrix_env.public_url + "/api/v1/offline_messages"
    async with aiohttp.ClientSession() as s:
        async with s.get(matrix_env.public_url + "/api/v1/site") as r:
            topics = {t["id"]: t["open"] for t in (await r.json())["topics"]}
        assert topics["after-hours"] is False and topics["general"] is True
        for bad, status, field in (({"topic": "after-hours"}, 400, "message"),
                                   ({"topic": "nope", "message": "hi"}, 400, "topic"),
                                   ({"topic": "after-hours", "message": "x" * 4001}, 413, "message"),
                                   ({"topic": "after-hours", "message": "hi", "contact": 5}, 400, "contact")):
            async with s.post(url, json=bad) as r:
                body = await r.json()
                assert r.status == status and set(body) == {"error", "message"} and field in body["message"], body
        async with s.post(url, data=b"not json", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_json"
        async with s.post(url, json={"topic": "after-hours", "message": "My shed was broken into last night.",
                                     "name": "Alex", "contact": "alex@example.org"}) as r:
            created = await r.json()
            assert r.status == 201, created
    ticket = created["ticket"]
    assert isinstance(ticket, int)

    notice = await officer.wait_message(lambda m: m.room_id == dispatch and f"Offline message T{ticket} " in m.body,
                                        60, "the ticket in the dispatch room")
    assert "My shed was broken into" in notice.body and "alex@example.org" in notice.body and "Alex" in notice.body
    await officer.send(dispatch, f"!claim T{ticket}")
    await officer.wait_message(lambda m: m.room_id == dispatch and f"T{ticket} is yours" in m.body, 60, "taken")
    await officer.wait_message(lambda m: m.room_id == dispatch and "m.new_content" in m.source["content"]
                               and f"T{ticket}" in m.source["content"]["m.new_content"]["body"]
                               and "Taken by @officer6:localhost" in m.source["content"]["m.new_content"]["body"],
                               60, "the ticket's notice edited")
    await officer.send(dispatch, f"!claim T{ticket}")
    await officer.wait_message(lambda m: m.room_id == dispatch and f"T{ticket} was already taken" in m.body, 60,
                               "second claim refused")
