"""!block and !unblock in a chat room, through the real bridge, Synapse and an encrypted nio officer:
the blocked citizen (connecting from 127.0.0.5) cannot open a new chat; another (127.0.0.6) can."""
from __future__ import annotations

import sqlite3

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.bridge_db import audit_entries
from tests.support.visitor import Visitor

BLOCKED, OTHER = "127.0.0.5", "127.0.0.6"


async def try_create(env: MatrixEnv, source: str) -> tuple[int, dict, Visitor]:
    v = Visitor(env.public_url, source=source)
    async with v.session.post(env.public_url + "/api/v1/chats", json={"topic": "general"}) as r:
        data = await r.json()
    if r.status == 201:
        v.chat_id, v.token, v.ws_url = data["chat_id"], data["token"], data["ws_url"]
    return r.status, data, v


async def close_all(visitors: list[Visitor]) -> None:
    for v in visitors:
        if v.chat_id:
            await v.http("POST", f"/api/v1/chats/{v.chat_id}/close", json={})
        await v.close()


async def test_block_ends_the_chat_refuses_that_source_only_and_unblock_lifts_it(
        matrix_env: MatrixEnv, officer_of, bridge_log):
    officer = await officer_of("central")
    citizen = Visitor(matrix_env.public_url, source=BLOCKED)
    made: list[Visitor] = [citizen]
    try:
        got = await open_chat(citizen, officer)
        room, puppet = got.room_id, got.sender

        await officer.send(room, "!block hoax calls all evening")
        notice = await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet
                                            and "blocked chat" in m.body, 60, "the block's confirmation")
        assert "!unblock" in notice.body and BLOCKED not in notice.body
        await citizen.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "closed",
                                 what="the blocked chat closed at the citizen")
        assert not any("hoax" in f.get("body", "") for f in citizen.messages())      # the reason stays internal

        status, data, again = await try_create(matrix_env, BLOCKED)
        made.append(again)
        assert status == 403 and data["error"] == "blocked" and data["message"], data
        # The refused attempt is on record by the source's salted hash, never its address.
        refused = [e for e in audit_entries(matrix_env.db_path, "chat.create") if e["target"] == citizen.chat_id]
        assert len(refused) == 1 and refused[0]["outcome"] == "refused", refused
        assert '"reason": "blocked"' in refused[0]["details"] and BLOCKED not in str(refused[0])
        status, data, other = await try_create(matrix_env, OTHER)
        made.append(other)
        assert status == 201, data

        block = audit_entries(matrix_env.db_path, "chat.block")[-1]
        assert (block["actor"], block["outcome"], block["target"]) == (matrix_env.officer_id("central"), "ok", citizen.chat_id)
        conn = sqlite3.connect(f"file:{matrix_env.db_path}?mode=ro", uri=True)
        try:
            stored = conn.execute("SELECT hash FROM source_blocks WHERE chat_id = ?", [citizen.chat_id]).fetchall()
        finally:
            conn.close()
        assert len(stored) == 1 and BLOCKED not in stored[0][0] and len(stored[0][0]) == 64

        await officer.send(room, "!unblock")
        await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet
                                   and "lifted the block" in m.body, 60, "the unblock's confirmation")
        status, data, after = await try_create(matrix_env, BLOCKED)
        made.append(after)
        assert status == 201, data
        unblock = audit_entries(matrix_env.db_path, "chat.unblock")[-1]
        assert (unblock["actor"], unblock["outcome"], unblock["target"]) == (matrix_env.officer_id("central"), "ok", citizen.chat_id)

        await officer.send(room, "!unblock")                                  # nothing left to lift: said so
        await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet
                                   and "is not blocked" in m.body, 60, "nothing to unblock")
    finally:
        await close_all(made)
