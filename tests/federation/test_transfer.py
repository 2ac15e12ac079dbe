"""Issue 4, test 4: `!transfer` from agency A (the bridge's homeserver) to an officer of agency B on another
homeserver. B's officer reads the conversation from before the transfer, decrypts the citizen's next message,
and the citizen receives B's reply; the first officer leaves (routing.transfer_first_officer: leave)."""
from __future__ import annotations

import uuid

import nio

from tests.support.bridge_db import audit_entries, dispatch_room_of
from tests.support.federation import LONG, FederationEnv, start_chat
from tests.support.waiting import until


async def _status_after(visitor, mark: int, state: str, what: str) -> None:
    """A status frame with this state among the frames received after ``mark``."""
    await until(lambda: any(f.get("type") == "status" and f.get("state") == state for f in visitor.frames[mark:]),
                LONG, what)


async def _left(officer, room: str, user: str, what: str) -> None:
    """Wait until the room's state on the officer's homeserver says ``user`` has left."""
    async def gone() -> bool:
        resp = await officer.client.room_get_state_event(room, "m.room.member", user)
        return isinstance(resp, nio.RoomGetStateEventResponse) and resp.content.get("membership") == "leave"
    await until(gone, LONG, what)


def _message(body: str, sender_kind: str):
    return lambda f: f.get("type") == "message" and f.get("from") == sender_kind and f.get("body") == body


async def test_transfer_to_an_officer_of_another_homeserver(fed_env: FederationEnv, officer_on, visitor, fed_log):
    tag = uuid.uuid4().hex[:8]
    officer_a = await officer_on(fed_env.a, "officer1")
    officer_b = await officer_on(fed_env.b, "bofficer")

    first = f"My bike was stolen {tag}"
    got = await start_chat(visitor, officer_a, first, display_name="Sam")
    room, puppet = got.room_id, got.sender
    question = f"Which street was it on? {tag}"
    await officer_a.send(room, question)
    await visitor.wait_frame(_message(question, "officer"), what="A's question at the citizen", timeout=LONG)
    answer = f"Mill Lane, in the county {tag}"
    await visitor.send(answer)
    await officer_a.wait_message(lambda m: m.body == answer, what="citizen's answer at A", timeout=LONG)

    # The room lets in only the bridge's homeserver and the allowlisted one.
    acl = await officer_a.client.room_get_state_event(room, "m.room.server_acl")
    assert acl.content["allow"] == ["127.0.0.1", fed_env.a.server_name, "127.0.0.2", fed_env.b.server_name], acl
    assert acl.content["deny"] == [] and acl.content["allow_ip_literals"] is True

    mark = len(visitor.frames)
    await officer_a.send(room, f"!transfer {fed_env.officer_b} bike theft, county area")
    told = await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("from") == "system"
                                    and "transferred to County Police" in f.get("body", ""),
                                    what="transfer notice at the citizen", timeout=LONG)
    assert told["body"].startswith("You are being transferred to County Police")
    await officer_a.wait_message(lambda m: m.room_id == room and m.sender == puppet
                                 and "transferred chat" in m.body, what="transfer confirmation at A", timeout=LONG)

    # B's officer joins the same encrypted room over federation and is given the conversation so far.
    await officer_b.wait_joined(room, timeout=LONG)
    history = await officer_b.wait_message(lambda m: m.room_id == room and first in m.body, timeout=LONG,
                                           what="conversation so far at B")
    assert history.sender == puppet and history.source["content"]["msgtype"] == "m.notice"
    assert question in history.body and answer in history.body and "bike theft, county area" in history.body
    assert history.body.index(first) < history.body.index(question) < history.body.index(answer)

    # B decrypts what the citizen writes next; the citizen gets B's reply.
    after = f"It is a red bike {tag}"
    await visitor.send(after)
    at_b = await officer_b.wait_message(lambda m: m.body == after, timeout=LONG, what="citizen's next message at B")
    assert at_b.sender == puppet
    reply = f"County Police here, we will look for it {tag}"
    await officer_b.send(room, reply)
    await visitor.wait_frame(_message(reply, "officer"), timeout=LONG, what="B's reply at the citizen")
    await _status_after(visitor, mark, "waiting", "waiting for B after the transfer")
    await _status_after(visitor, mark, "active", "active again once B joined")

    # The citizen never lost anything and never saw the command; A has left (the configured policy).
    bodies = [f["body"] for f in visitor.messages()]
    for line in (first, question, answer, after, reply):
        assert bodies.count(line) == 1, line
    assert bodies.index(first) < bodies.index(question) < bodies.index(answer) < bodies.index(after) \
        < bodies.index(reply)
    assert not any(b.lstrip().startswith("!") or "county area" in b for b in bodies)
    await _left(officer_b, room, fed_env.officer_a, "officer A to leave after the handover")

    # And back: B's command (decrypted by the bridge from another homeserver) hands it to A again.
    await officer_b.send(room, f"!transfer {fed_env.officer_a} back to you")
    await visitor.wait_frame(lambda f: f.get("from") == "system" and "transferred to Central Police" in f["body"],
                             what="transfer back at the citizen", timeout=LONG)
    back = await officer_a.wait_message(lambda m: m.room_id == room and m.sender == puppet and reply in m.body
                                        and "back to you" in m.body, timeout=LONG, what="conversation so far at A")
    assert first in back.body and after in back.body
    await _left(officer_a, room, fed_env.officer_b, "B to leave")

    audited = [e for e in audit_entries(fed_env.db_path, "chat.transfer") if e["origin"] == room]
    assert [(e["actor"], e["outcome"]) for e in audited] == [(fed_env.officer_a, "ok"), (fed_env.officer_b, "ok")]
    assert fed_env.officer_b in audited[0]["details"] and "county" in audited[0]["details"]


async def test_transfer_to_an_agency_queues_it_there_and_its_officer_takes_it_over(fed_env: FederationEnv, officer_on,
                                                                                     visitor, fed_log):
    tag = uuid.uuid4().hex[:8]
    officer_a = await officer_on(fed_env.a, "officer1")
    officer_b = await officer_on(fed_env.b, "bofficer")
    first = f"Noise from the farm next door {tag}"
    got = await start_chat(visitor, officer_a, first)
    room, puppet = got.room_id, got.sender

    await officer_a.send(room, "!transfer nowhere")
    unknown = await officer_a.wait_message(lambda m: m.room_id == room and "unknown agency" in m.body,
                                           what="unknown agency notice", timeout=LONG)
    assert "central, county" in unknown.body

    mark = len(visitor.frames)
    await officer_a.send(room, "!transfer county rural noise complaint")
    await _status_after(visitor, mark, "waiting", "back in the queue, now County's")
    told = await visitor.wait_frame(lambda f: f.get("from") == "system" and f.get("code") == "transferred", timeout=LONG)
    assert told["body"].startswith("You are being transferred to County Police")
    await officer_b.wait_joined(room, timeout=LONG)
    history = await officer_b.wait_message(lambda m: m.room_id == room and m.sender == puppet and first in m.body,
                                           timeout=LONG, what="conversation so far at B")
    assert "rural noise complaint" in history.body
    await _status_after(visitor, mark, "active", "active again once County's officer joined")
    reply = f"County Police here {tag}"
    await officer_b.send(room, reply)
    await visitor.wait_frame(_message(reply, "officer"), timeout=LONG, what="B's reply at the citizen")
    assert not any("nowhere" in f.get("body", "") or "rural noise" in f.get("body", "") for f in visitor.messages())

    # County's dispatch room, where B claimed it from the other homeserver, has the same server ACL.
    dispatch = await dispatch_room_of(fed_env.db_path, "county")
    acl = await officer_b.client.room_get_state_event(dispatch, "m.room.server_acl")
    assert isinstance(acl, nio.RoomGetStateEventResponse), acl
    assert acl.content["allow"] == ["127.0.0.1", fed_env.a.server_name, "127.0.0.2", fed_env.b.server_name]
