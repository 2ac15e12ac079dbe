"""Automatic assignment (availability, cap, balance) and the timers, against the real bridge and Synapse.

Each test has an agency of its own (tests/support/agencies.py), so who is assigned what, what waits and what is
handed on are its chats alone: automatic routing with one chat per officer, timeouts of a few seconds, a short
grace for an absent officer, as each test's marker says.
"""
from __future__ import annotations

import pytest

from bridge.chats import notices
from tests.conftest import SERGEANT, SERVER
from tests.support.bridge_db import claimed_by, dispatch_room_of, has_room, room_of
from tests.support.visitor import Visitor
from tests.support.waiting import until

SUPERVISED = {"supervisors": [f"@{SERGEANT}:{SERVER}"]}          # alerts mention the sergeant
SHIFT = {**SUPERVISED, "timeouts": {"officer_absent_seconds": 3}}   # an absent officer's chats handed on after 3 s


def system_texts(visitor: Visitor) -> list[str]:
    return [f["body"] for f in visitor.messages() if f["from"] == "system"]


@pytest.mark.agency(officers=2, routing="auto", max_chats_per_officer=1, present_officers_as="Officer {n}",
                    **SUPERVISED)
async def test_auto_assignment_respects_the_cap_and_balances_load(matrix_env, agency, officer_of, visitors,
                                                                 bridge_log):
    first = await officer_of(agency.officers[0], auto_claim=False)
    second = await officer_of(agency.officers[1], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    for officer in (first, second):
        await officer.wait_member(dispatch, 60)
        await officer.send(dispatch, "!available")
        await officer.wait_message(lambda m: m.room_id == dispatch and m.body.startswith(officer.client.user_id)
                                   and "is available" in m.body, 60, "availability confirmed")
    try:
        chats = [visitors() for _ in range(3)]
        for v in chats:
            await v.create(topic=agency.topic)
            await v.connect()
        # Chats that have not said anything get a room when they are assigned (the third is not, yet).
        rooms = [await room_of(matrix_env.db_path, v.chat_id, 90) for v in chats[:2]]

        def holders(room: str) -> list:
            return [o for o in (first, second) if room in o.client.rooms]
        await until(lambda: len(holders(rooms[0])) == 1 and len(holders(rooms[1])) == 1, 90,
                    "the first two chats assigned")
        assert holders(rooms[0]) != holders(rooms[1]), "load is balanced: one chat each"
        for v in chats[:2]:
            await v.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active", 60, "active")
            # The agency shows officers to citizens as "Officer {n}", never by their Matrix name.
            joined = [t for t in system_texts(v) if t.endswith("has joined the chat.")]
            assert joined and joined[0].startswith("Officer ") and "-officer" not in joined[0]
        # Both are at the cap (1): the third chat waits, first in the queue.
        status = await chats[2].wait_frame(lambda f: f.get("type") == "status", 30, "the third chat's status")
        assert status["state"] == "waiting"
        assert claimed_by(matrix_env.db_path, chats[2].chat_id) is None
        assert not has_room(matrix_env.db_path, chats[2].chat_id), "a silent, unassigned chat has no room"

        # The officer with the first chat closes it: the slot frees and the third chat goes to them.
        holder = holders(rooms[0])[0]
        await holder.send(rooms[0], "!close")
        rooms.append(await room_of(matrix_env.db_path, chats[2].chat_id, 90))
        await until(lambda: holders(rooms[2]) == [holder], 90, "the third chat assigned to the freed officer")
        await chats[2].wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active", 60,
                                  "third chat active")
        for room in rooms[1:]:
            await holders(room)[0].send(room, "!close")
    finally:
        for officer in (first, second):
            await officer.send(dispatch, "!away")
            await officer.wait_message(lambda m: m.room_id == dispatch and m.body.startswith(officer.client.user_id)
                                       and "is away" in m.body, 60, "away confirmed")


@pytest.mark.agency(**SUPERVISED, timeouts={"unclaimed_seconds": 3, "unanswered_seconds": 6,
                                             "visitor_idle_seconds": 4, "visitor_idle_close_seconds": 4})
async def test_timers_realert_requeue_and_close_an_idle_chat(matrix_env, agency, officer_of, visitors, bridge_log):
    officer = await officer_of(agency.officers[0], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    visitor = visitors()
    number = (await visitor.create(topic=agency.topic))["number"]
    await visitor.connect()

    # Unclaimed for 3 s: the dispatch room is alerted again, and the supervisors are mentioned.
    alert = await officer.wait_message(lambda m: m.room_id == dispatch and "waiting without an officer" in m.body
                                       and f"Chat {number} (" in m.body, 60, "the unclaimed re-alert")
    content = alert.source["content"]
    assert content["m.mentions"]["user_ids"] == ["@sergeant1:localhost"]
    assert 'href="https://matrix.to/#/@sergeant1:localhost"' in content["formatted_body"]

    # Claimed but not answered within 6 s: back to the queue, and the officer is taken out of the room.
    await officer.claim(dispatch, number)
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await officer.wait_joined(room, 60)
    await visitor.wait_frame(lambda f: f.get("from") == "system" and f.get("body") == notices.text("requeued"),
                             60, "back in the queue")
    await officer.wait_message(lambda m: m.room_id == dispatch and f"Chat {number} is back in the queue" in m.body,
                               60, "requeue notice in dispatch")
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "waiting", 30, "waiting")

    # Claimed again and answered; then the citizen stays silent: warned after 4 s, closed 4 s later.
    await officer.claim(dispatch, number)
    await until(lambda: len([t for t in system_texts(visitor) if t.endswith("has joined the chat.")]) >= 2, 60,
                "the officer back in the room")
    await officer.send(room, "Hello, are you still there?")
    await visitor.wait_frame(lambda f: f.get("from") == "system" and f.get("body") == notices.text("idle_warning"),
                             60, "idle warning")
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "closed", 60, "closed")
    assert notices.text("ended_idle") in system_texts(visitor)
    await officer.notice(dispatch, number, edited=True, predicate=lambda b: "Closed after" in b)


@pytest.mark.agency(officers=2, routing="auto", max_chats_per_officer=5, timeouts={"unanswered_seconds": 6},
                    **SUPERVISED)
async def test_auto_mode_gives_an_unanswered_chat_to_the_next_officer(matrix_env, agency, officer_of, visitors,
                                                                     bridge_log):
    """The agency routes automatically and takes a chat back after 6 s without an answer."""
    first = await officer_of(agency.officers[0], auto_claim=False)
    second = await officer_of(agency.officers[1], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    officers = (first, second)
    for officer in officers:
        await officer.wait_member(dispatch, 60)
        await officer.send(dispatch, "!available")
        await officer.wait_message(lambda m: m.room_id == dispatch and m.body.startswith(officer.client.user_id)
                                   and "is available" in m.body, 60, "availability confirmed")
    try:
        visitor = visitors()
        await visitor.create(topic=agency.topic)
        await visitor.connect()
        room = await room_of(matrix_env.db_path, visitor.chat_id)

        def holders() -> list:
            return [o for o in officers if room in o.client.rooms]
        await until(lambda: len(holders()) == 1, 90, "the chat assigned to one officer")
        silent = holders()[0]
        other = second if silent is first else first

        # The assigned officer says nothing: the chat goes back to the queue and on to the other officer.
        await visitor.wait_frame(lambda f: f.get("from") == "system" and f.get("body") == notices.text("requeued"),
                                 60, "back in the queue")
        # (nio keeps a room it was kicked from in client.rooms, so ask the bridge who holds it now.)
        await until(lambda: claimed_by(matrix_env.db_path, visitor.chat_id) == other.client.user_id, 90,
                    "the chat reassigned to the other officer")
        await other.wait_joined(room, 60)
        await other.send(room, "Sorry for the wait, how can I help?")
        await visitor.wait_frame(lambda f: f.get("from") == "officer"
                                 and f.get("body") == "Sorry for the wait, how can I help?", 60, "the reply")
        status, body = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}")
        assert body["state"] == "active"
        await other.send(room, "!close")
    finally:
        for officer in officers:
            await officer.send(dispatch, "!away")
            await officer.wait_message(lambda m: m.room_id == dispatch and m.body.startswith(officer.client.user_id)
                                       and "is away" in m.body, 60, "away confirmed")


@pytest.mark.agency(**SHIFT)
async def test_an_officer_whose_client_goes_offline_has_their_chats_handed_on(matrix_env, agency,
                                                                              officer_of, visitors, bridge_log):
    """Issue 15: an officer closes the laptop mid-chat. The homeserver's presence says offline; after the
    agency's grace (3 s here) the supervisors are alerted and the chat goes back to the queue, the
    citizen told ("requeued", shown in their language by its code), the record and audit log saying why."""
    from tests.integration.test_conversation import open_chat
    from tests.support.bridge_db import audit_entries

    officer = await officer_of(agency.officers[0])
    sergeant = await officer_of("sergeant", auto_claim=False)          # supervises the agency
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    await sergeant.wait_member(dispatch, 60)
    visitor = visitors()
    got = await open_chat(visitor, officer, topic=agency.topic, language="es")
    await officer.send(got.room_id, "I'm looking into it")            # answered: no 'unanswered' hand-on
    await visitor.wait_frame(lambda f: f.get("body") == "I'm looking into it", 60, "the officer's reply")
    assert claimed_by(matrix_env.db_path, visitor.chat_id) == officer.client.user_id

    await officer.go_offline()
    back = await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("code") == "requeued", 60,
                                    "the citizen told the chat is back in the queue")
    assert back["from"] == "system"
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "waiting", 30,
                             "the chat waiting again")
    assert claimed_by(matrix_env.db_path, visitor.chat_id) is None
    number = (await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}"))[1]["number"]
    alert = await sergeant.wait_message(lambda m: m.room_id == dispatch and f"{officer.client.user_id} is offline"
                                        in m.body and str(number) in m.body, 60, "the supervisors' alert")
    assert sergeant.client.user_id in alert.source["content"]["m.mentions"]["user_ids"]
    requeued = [e for e in audit_entries(matrix_env.db_path, "chat.requeue") if e["target"] == visitor.chat_id]
    assert len(requeued) == 1 and requeued[0]["actor"] == "system" and "offline" in requeued[0]["details"]


@pytest.mark.agency(**SHIFT)
async def test_an_officer_whose_client_goes_quiet_without_a_word_has_their_chats_handed_on(
        matrix_env, agency, officer_of, visitors, bridge_log):
    """Issue 15, "the officer's client going quiet": the network drops or the client is killed, so nothing says
    offline; the client just stops syncing. The homeserver's presence times out (Synapse: 30 s without a sync)
    and the bridge, polling the presence of officers who hold chats, hands the chat on as for an offline one."""
    from tests.integration.test_conversation import open_chat
    from tests.support.bridge_db import audit_entries

    officer = await officer_of(agency.officers[0])
    visitor = visitors()
    got = await open_chat(visitor, officer, topic=agency.topic)
    await officer.send(got.room_id, "checking the log now")
    await visitor.wait_frame(lambda f: f.get("body") == "checking the log now", 60, "the officer's reply")
    await officer.lose_connection()
    await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("code") == "requeued", 120,
                             "the chat handed on after the client went quiet")
    assert claimed_by(matrix_env.db_path, visitor.chat_id) is None
    requeued = [e for e in audit_entries(matrix_env.db_path, "chat.requeue") if e["target"] == visitor.chat_id]
    assert len(requeued) == 1 and requeued[0]["actor"] == "system" and "offline" in requeued[0]["details"]


@pytest.mark.agency(**SHIFT)
async def test_an_officer_who_says_away_has_their_chats_handed_on_after_the_grace(matrix_env, agency,
                                                                                  officer_of, visitors, bridge_log):
    """!away stops automatic assignment at once and, after the agency's grace, hands on what they hold."""
    from tests.integration.test_conversation import open_chat
    from tests.support.bridge_db import audit_entries

    officer = await officer_of(agency.officers[0])
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    visitor = visitors()
    got = await open_chat(visitor, officer, topic=agency.topic)
    await officer.send(got.room_id, "one moment")
    await visitor.wait_frame(lambda f: f.get("body") == "one moment", 60, "the officer's reply")
    await officer.send(dispatch, "!away")
    await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("code") == "requeued", 60,
                             "the chat handed on")
    assert claimed_by(matrix_env.db_path, visitor.chat_id) is None
    requeued = [e for e in audit_entries(matrix_env.db_path, "chat.requeue") if e["target"] == visitor.chat_id]
    assert len(requeued) == 1 and "said they are away" in requeued[0]["details"]
