"""Messages reach the citizen only from officers admitted to the chat, checked on every message
(issue 10), not only when someone joins. A real second Matrix user, joined while they were admitted,
speaks after the chat has been transferred away from their agency: the citizen never sees it, the
record and the audit trail hold it as refused, the officers are told, and the chat goes on."""
from __future__ import annotations

import json
import sqlite3
import uuid

import nio

from tests.conftest import MatrixEnv
from tests.support.bridge_db import audit_entries, dispatch_room_of, room_of


def refused_records(env: MatrixEnv, chat_id: str) -> list[tuple[str, dict, dict]]:
    conn = sqlite3.connect(f"file:{env.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT actor, details, content FROM chat_records WHERE chat_id = ? "
                            "AND kind = 'message.refused' ORDER BY idx", [chat_id]).fetchall()
    finally:
        conn.close()
    return [(a, json.loads(d), json.loads(c) if c else {}) for a, d, c in rows]


async def test_a_member_no_longer_admitted_is_not_heard(matrix_env: MatrixEnv, officer_of, visitors, bridge_log):
    central = await officer_of("central", auto_claim=False)
    sergeant = await officer_of("sergeant", auto_claim=False)     # supervisor of central, not of nightshift
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    await visitor.connect()
    tag = uuid.uuid4().hex[:6]
    await visitor.send(f"my bike {tag}")
    await central.claim(dispatch, number)
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await central.wait_joined(room, 60)
    resp = await central.client.room_invite(room, sergeant.client.user_id)
    assert isinstance(resp, nio.RoomInviteResponse), resp
    await sergeant.wait_joined(room, 60)

    # While the chat is central's, its supervisor is heard.
    await sergeant.send(room, f"sergeant while admitted {tag}")
    await visitor.wait_frame(lambda f: f.get("body") == f"sergeant while admitted {tag}", 60, "the admitted line")

    await central.send(room, "!transfer nightshift")
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "waiting", 60,
                             "the chat back in a queue, now nightshift's")
    forged = f"Your case is closed, do not call again {tag}"
    event_id = await sergeant.send(room, forged)
    # The transferring officer still holds the chat until someone takes it: heard, and after the refusal
    # (events of a room are handled in order), so once this arrives the refused one was decided.
    await central.send(room, f"still here {tag}")
    await visitor.wait_frame(lambda f: f.get("body") == f"still here {tag}", 60, "the transferring officer")
    assert not [m for m in visitor.messages() if forged in (m.get("body") or "")]
    status, listing = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}/messages")
    assert status == 200 and not [m for m in listing["messages"] if forged in (m.get("body") or "")]

    told = await central.wait_message(lambda m: m.room_id == room and "was not shown to the citizen" in m.body
                                      and sergeant.client.user_id in m.body, 60, "the officers told")
    assert told.source["content"].get("m.mentions") == {}
    [(actor, details, content)] = refused_records(matrix_env, visitor.chat_id)
    assert actor == sergeant.client.user_id and details["event_id"] == event_id and content["body"] == forged
    assert any(e["actor"] == sergeant.client.user_id and e["outcome"] == "refused" and e["target"] == visitor.chat_id
               for e in audit_entries(matrix_env.db_path, "chat.message_refused"))
