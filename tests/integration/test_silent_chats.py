"""What a chat that has said nothing costs, and the alerts it causes (issue 10), on the real bridge and Synapse.

Each test has an agency of its own (tests/support/agencies.py), so its queue holds its chats alone: at most 3
waiting chats, re-alerts every 3 s, and a waiting chat whose citizen has had no page open (and written nothing)
closed after 4 s. Chats that must not expire keep a WebSocket open.
"""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from bridge.chats import notices
from tests.support.bridge_db import dispatch_room_of, has_room, record_of, room_of
from tests.conftest import SERGEANT, SERVER
from tests.support.waiting import until

QUIET_DESK = {"supervisors": [f"@{SERGEANT}:{SERVER}"], "max_waiting_chats": 3,
              "timeouts": {"unclaimed_seconds": 3, "abandoned_seconds": 4}}
pytestmark = pytest.mark.agency(**QUIET_DESK)


def _one(db: Path, sql: str, params: list | tuple = ()) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def puppet_count(env) -> int:
    return _one(env.db_path, "SELECT COUNT(*) FROM puppets")


def homeserver_puppets(env) -> int:
    """Visitor users the homeserver has (its own database, read-only)."""
    return env.synapse.query("SELECT COUNT(*) FROM users WHERE name LIKE '@webchat\\_%' ESCAPE '\\'")[0][0]


def pool_full(env) -> bool:
    size = env.config["chats"]["puppet_pool_size"]
    return _one(env.db_path, "SELECT COUNT(*) FROM puppets WHERE chat_id IS NULL AND room_id IS NOT NULL") >= size


async def state_of(visitor) -> str:
    status, body = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}")
    assert status == 200, body
    return body["state"]


async def test_a_silent_chat_costs_no_matrix_account_until_it_speaks_or_is_claimed(matrix_env, agency, officer_of,
                                                                                    visitors, bridge_log):
    officer = await officer_of(agency.officers[0], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    await officer.wait_member(dispatch, 60)
    await until(lambda: pool_full(matrix_env), 120, "the puppet pool filled")
    puppets, hs_users = puppet_count(matrix_env), homeserver_puppets(matrix_env)

    chats = [visitors() for _ in range(3)]
    numbers = []
    for v in chats:
        numbers.append((await v.create(topic=agency.topic))["number"])
        await v.connect()              # an open page: the chat does not expire
    # The police see every waiting citizen at once: the bot's notice is posted at open, before any word.
    for number in numbers:
        await officer.notice(dispatch, number)
    for v in chats:
        assert not has_room(matrix_env.db_path, v.chat_id), "a silent chat has no puppet and no room"
    assert puppet_count(matrix_env) == puppets, "no puppet made or taken from the pool for silent chats"
    assert homeserver_puppets(matrix_env) == hs_users, "no Matrix user registered for silent chats"

    # The first message makes the chat's puppet and room (from the warm pool) and reaches the officer who claims it.
    words = "Someone took my bike from the station"
    await chats[0].send(words)
    room = await room_of(matrix_env.db_path, chats[0].chat_id, 60)
    await officer.notice(dispatch, numbers[0], edited=True, predicate=lambda body: words in body)
    await officer.claim(dispatch, numbers[0])
    await officer.wait_joined(room, 60)
    got = await officer.wait_message(lambda m: m.room_id == room and m.body == words, 60, "the citizen's first words")
    assert got.sender.startswith("@webchat_")

    # A claim of a silent chat makes its room, and the officer is invited to it and joins.
    await officer.claim(dispatch, numbers[1])
    claimed_room = await room_of(matrix_env.db_path, chats[1].chat_id, 60)
    await officer.wait_joined(claimed_room, 60)
    await chats[1].wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active", 60, "active")
    reply = "Hello, this is the police. How can we help?"
    await officer.send(claimed_room, reply)
    await chats[1].wait_frame(lambda f: f.get("from") == "officer" and f.get("body") == reply, 60, "the reply")

    # The third never spoke and nobody took it: still nothing on the homeserver.
    assert await state_of(chats[2]) == "waiting"
    assert not has_room(matrix_env.db_path, chats[2].chat_id)


async def test_a_first_attachment_sets_the_chat_up_within_the_request(matrix_env, agency, officer_of, visitors,
                                                                      bridge_log):
    officer = await officer_of(agency.officers[0], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    await officer.wait_member(dispatch, 60)
    visitor = visitors()
    number = (await visitor.create(topic=agency.topic))["number"]
    await visitor.connect()
    await officer.notice(dispatch, number)
    assert not has_room(matrix_env.db_path, visitor.chat_id)
    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
           b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND"
           b"\xaeB`\x82")
    async with visitor.session.post(f"{visitor.base_url}/api/v1/chats/{visitor.chat_id}/attachments",
                                    params={"client_id": "a1", "filename": "x.png"}, data=png,
                                    headers={"Authorization": f"Bearer {visitor.token}",
                                             "Content-Type": "image/png"}) as r:
        assert r.status == 201, await r.text()
    room = await room_of(matrix_env.db_path, visitor.chat_id, 5)
    await officer.claim(dispatch, number)
    await officer.wait_joined(room, 60)
    await until(lambda: next((e for r, e in officer.media if r == room), None), 60, "the photo at the officer")


async def test_a_waiting_chat_with_no_page_open_expires_but_one_with_a_page_does_not(matrix_env, agency, officer_of,
                                                                                      visitors, bridge_log):
    officer = await officer_of(agency.officers[0], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    watched, left = visitors(), visitors()
    await watched.create(topic=agency.topic)
    await watched.connect()
    number = (await left.create(topic=agency.topic))["number"]     # opened after the watched one, and never connected

    async def closed(v) -> bool:
        return await state_of(v) == "closed"
    await until(lambda: closed(left), 60, "the abandoned chat closed", interval=0.5)
    assert await state_of(watched) == "waiting", "a chat whose page is open stays in the queue"
    status, body = await left.http("GET", f"/api/v1/chats/{left.chat_id}/messages")
    last = body["messages"][-1]
    assert last["code"] == "ended_abandoned" and last["body"] == notices.text("ended_abandoned")
    closing = [e for e in record_of(matrix_env.db_path, left.chat_id) if e["kind"] == "closed"]
    assert closing and closing[0]["details"] == {"by": "timeout", "cause": "abandoned"}
    assert closing[0]["content"]["reason"] == "citizen left the queue"
    assert not has_room(matrix_env.db_path, left.chat_id)
    await officer.notice(dispatch, number, edited=True, predicate=lambda b: "Closed after" in b)

    # The watched citizen's page goes away: their chat expires too, and they see why when they come back.
    await watched.disconnect()
    await until(lambda: closed(watched), 60, "the chat whose page closed", interval=0.5)
    await watched.connect(since=0)
    await watched.wait_frame(lambda f: f.get("code") == "ended_abandoned", 30, "the notice on return")


async def test_a_full_queue_answers_busy_and_creates_nothing(matrix_env, agency, visitors, bridge_log):
    queue = [visitors() for _ in range(3)]
    for v in queue:
        await v.create(topic=agency.topic)
        await v.connect()
    chats_before = _one(matrix_env.db_path, "SELECT COUNT(*) FROM chats")
    async with aiohttp.ClientSession() as http:
        async with http.post(matrix_env.public_url + "/api/v1/chats", json={"topic": agency.topic}) as r:
            body = await r.json()
            assert r.status == 503 and body["error"] == "busy", body
            assert r.headers["Retry-After"] == "60"
            assert "101" in body["message"] and "999" in body["message"]
            assert body["phone_number"] == "101" and body["retry_after"] == 60
        assert _one(matrix_env.db_path, "SELECT COUNT(*) FROM chats") == chats_before, "nothing created"
        # Other agencies' queues are not affected.
        async with http.post(matrix_env.public_url + "/api/v1/chats", json={"topic": "night"}) as r:
            other = await r.json()
            assert r.status == 201, other
        async with http.post(f"{matrix_env.public_url}/api/v1/chats/{other['chat_id']}/close", json={},
                             headers={"Authorization": f"Bearer {other['token']}"}) as r:
            assert r.status == 200
        # A place frees: the next citizen gets in.
        await queue[0].http("POST", f"/api/v1/chats/{queue[0].chat_id}/close", json={})
        async with http.post(matrix_env.public_url + "/api/v1/chats", json={"topic": agency.topic}) as r:
            later = await r.json()
            assert r.status == 201, later
        async with http.post(f"{matrix_env.public_url}/api/v1/chats/{later['chat_id']}/close", json={},
                             headers={"Authorization": f"Bearer {later['token']}"}) as r:
            assert r.status == 200


async def test_unclaimed_chats_are_realerted_in_one_notice_listing_them(matrix_env, agency, officer_of, visitors,
                                                                        bridge_log):
    officer = await officer_of(agency.officers[0], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    await officer.wait_member(dispatch, 60)
    first, second = visitors(), visitors()
    created = await asyncio.gather(first.create(topic=agency.topic), second.create(topic=agency.topic))
    numbers = [d["number"] for d in created]
    await asyncio.gather(first.connect(), second.connect())

    def realerts(number: int) -> list:
        return [m for m in officer.messages if m.room_id == dispatch and "waiting without an officer" in m.body
                and f"Chat {number} (" in m.body]
    await until(lambda: realerts(numbers[0]), 60, "the re-alert")
    notice = realerts(numbers[0])[0]
    assert f"Chat {numbers[1]} (" in notice.body, "both waiting chats are in one notice, not one notice each"
    assert notice.body.startswith("2 chats are waiting without an officer")
    assert notice.source["content"]["m.mentions"]["user_ids"] == ["@sergeant1:localhost"]
    # The next interval lists them again, in one notice again.
    await until(lambda: len(realerts(numbers[0])) >= 2, 60, "the next re-alert")
    again = realerts(numbers[0])[1]
    assert f"Chat {numbers[1]} (" in again.body
    assert [m.event_id for m in realerts(numbers[1])] == [m.event_id for m in realerts(numbers[0])]
