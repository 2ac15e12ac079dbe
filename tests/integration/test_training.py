"""Practice chats through the real bridge and Synapse (issue 15, training): a supervisor starts one for a
trainee with ``!practice``; the trainee, a real encrypted client, handles it like any chat while the bridge
plays the citizen from the scenario; the dispatch notice and the room say TRAINING, the audit log says who
started it, and an officer who is not a supervisor cannot."""
from __future__ import annotations

import re

from tests.conftest import MatrixEnv
from tests.support.bridge_db import audit_entries, dispatch_room_of, rows

SCRIPT = ["Hi, my bike was stolen from outside the station this morning.",
          "It's a blue Trek, I locked it to the railings at about 8.",
          "I have a photo of it and the frame number at home."]


async def test_a_supervisor_starts_a_practice_chat_and_the_trainee_handles_the_scripted_citizen(
        matrix_env: MatrixEnv, officer_of, bridge_log):
    trainee = await officer_of("central", auto_claim=False)
    supervisor = await officer_of("sergeant", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    await trainee.wait_member(dispatch, 60)
    await supervisor.wait_member(dispatch, 60)

    await trainee.send(dispatch, "!practice")
    await trainee.wait_message(lambda m: m.room_id == dispatch and "Only supervisors may start a practice chat"
                               in m.body, 60, "the refusal for an officer")

    me = trainee.client.user_id
    await supervisor.send(dispatch, f"!practice stolen-bike {me}")
    answer = await supervisor.wait_message(lambda m: m.room_id == dispatch and f"assigned to {me}" in m.body, 60,
                                           "the bot's answer to !practice")
    number = int(re.search(r"Chat (\d+)", answer.body)[1])       # type: ignore[index]
    [(chat_id, training)] = rows(matrix_env.db_path, "SELECT id, training FROM chats WHERE number = ?", [number])
    assert training == "stolen-bike"

    first = await trainee.wait_message(lambda m: m.body == SCRIPT[0], 90, "the scripted citizen's first line")
    room = first.room_id
    assert trainee.client.rooms[room].name.startswith(f"TRAINING — Chat {number}")
    notice = await trainee.notice(dispatch, number, edited=None, predicate=lambda body: "TRAINING" in body)
    assert "stolen-bike" in (notice.source["content"].get("m.new_content") or notice.source["content"])["body"]

    await trainee.send(room, "Hello, I'm sorry to hear that. What kind of bike is it?")
    await trainee.wait_message(lambda m: m.room_id == room and m.body == SCRIPT[1], 60, "the second line")
    await trainee.send(room, "Thank you. Do you have the frame number?")
    await trainee.wait_message(lambda m: m.room_id == room and m.body == SCRIPT[2], 60, "the third line")
    said = rows(matrix_env.db_path, "SELECT body FROM messages WHERE chat_id = ? AND sender_kind = 'visitor' "
                "ORDER BY seq", [chat_id])
    assert [r[0] for r in said] == SCRIPT                      # each line once, in order, none ahead of a reply

    started = [e for e in audit_entries(matrix_env.db_path, "chat.practice")]
    assert [(e["actor"], e["outcome"]) for e in started if e["target"] == chat_id] == [
        (supervisor.client.user_id, "ok")]
    assert any(e["actor"] == me and e["outcome"] == "refused" for e in started)

    await trainee.send(room, "!close")                        # leaves the shared queue as it found it
    await trainee.wait_message(lambda m: m.room_id == room and f"closed chat {number}" in m.body, 60, "the close")
