"""Erasure through the real visitor API, bridge and Synapse: refused while open and under legal hold (the
refusal audited), otherwise the store forgets the citizen's words and the puppet's events are redacted."""
from __future__ import annotations

import json
import sqlite3
import uuid
from urllib.parse import quote

import aiohttp

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.integration.test_records import cli, officer, visitor  # noqa: F401 (fixtures)
from tests.support.waiting import until


def audit_of(env: MatrixEnv, chat_id: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{env.dir / 'precinct.db'}?mode=ro", uri=True)
    try:
        return [(a, o) for a, o in conn.execute("SELECT action, outcome FROM audit_log WHERE target = ? ORDER BY idx",
                                                [chat_id])]
    finally:
        conn.close()


async def event_as_officer(officer, room_id: str, event_id: str) -> dict:
    url = f"{officer.client.homeserver}/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers={"Authorization": f"Bearer {officer.client.access_token}"}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def test_erasure_refused_then_done_and_the_puppets_messages_redacted(matrix_env, officer, visitor,
                                                                          bridge_log):
    first = await open_chat(visitor, officer, display_name="Jo Bloggs-Erasure")
    secret = f"My address is 12 Acacia Avenue {uuid.uuid4().hex[:6]}"
    await visitor.send(secret)
    second = await officer.wait_message(lambda m: m.body == secret, timeout=60)
    path = f"/api/v1/chats/{visitor.chat_id}"

    status, body = await visitor.http("DELETE", path)
    assert (status, body["error"]) == (409, "chat_open")
    status, _ = await visitor.http("POST", path + "/close")
    assert status == 200

    cli(matrix_env, "records", "hold", "--reason", "case 2026/77", "--by", "@sergeant:localhost", "--",
        visitor.chat_id)
    status, body = await visitor.http("DELETE", path)
    assert (status, body["error"]) == (409, "legal_hold") and body["message"]
    assert ("chat.erase", "refused") in audit_of(matrix_env, visitor.chat_id)
    status, body = await visitor.http("DELETE", path, token="not-the-token")
    assert status == 401

    cli(matrix_env, "records", "hold", "--lift", "--", visitor.chat_id)
    status, body = await visitor.http("DELETE", path)
    assert status == 202 and body["state"] == "erased"
    assert ("chat.erase", "ok") in audit_of(matrix_env, visitor.chat_id)

    for event_id in (first.event_id, second.event_id):        # the homeserver's copies are redacted
        async def redacted(event_id: str = event_id) -> bool:
            event = await event_as_officer(officer, first.room_id, event_id)
            return event.get("content") == {} and "redacted_because" in (event.get("unsigned") or {})
        await until(redacted, 60, f"redaction of {event_id}", interval=0.5)

    async def renamed() -> bool:                               # the name the citizen gave is gone from the room
        state = await officer.client.room_get_state(first.room_id)
        member = next(e for e in state.events if e["type"] == "m.room.member" and e["state_key"] == first.sender)
        return member["content"].get("displayname") == "Visitor (erased)"
    await until(renamed, 60, "the puppet's neutral name", interval=0.5)

    # With its redactions sent, the puppet is retired at the keeper's next run (at start-up, then hourly): its
    # device store (every room key it held, which could decrypt officers' words in the room) and its device go.
    puppet_store = matrix_env.dir / "crypto" / f"{first.sender[1:].split(':')[0]}.db"
    assert puppet_store.exists()
    matrix_env.bridge.stop()
    matrix_env.bridge.start()
    await until(lambda: not puppet_store.exists(), 60, "the erased chat's puppet retired")

    status, data = await visitor.http("GET", path + "/messages")
    assert status == 200 and secret not in json.dumps(data)
    out = matrix_env.dir / f"erased-{visitor.chat_id}.json"
    cli(matrix_env, "transcript", "export", "-o", str(out), "--", visitor.chat_id)
    assert secret not in out.read_text() and "Acacia" not in out.read_text()
    assert cli(matrix_env, "transcript", "verify", str(out)).stdout.startswith("OK:")
    assert "0 match" in cli(matrix_env, "transcript", "search", "Acacia").stderr


def held(env: MatrixEnv, chat_id: str) -> bool:
    conn = sqlite3.connect(f"file:{env.db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT 1 FROM legal_holds WHERE chat_id = ?", [chat_id]).fetchone() is not None
    finally:
        conn.close()


async def test_a_supervisor_holds_and_lifts_from_the_chat_room(matrix_env, officer_of, visitor, bridge_log):
    sergeant = await officer_of("sergeant")                   # supervises central; claims like an officer
    got = await open_chat(visitor, sergeant)
    await sergeant.send(got.room_id, "!hold case 2026/81")
    await sergeant.wait_message(lambda m: m.room_id == got.room_id and "under legal hold" in m.body, 60,
                                "the hold confirmed in the room")
    assert held(matrix_env, visitor.chat_id)
    path = f"/api/v1/chats/{visitor.chat_id}"
    assert (await visitor.http("POST", path + "/close"))[0] == 200
    status, body = await visitor.http("DELETE", path)
    assert (status, body["error"]) == (409, "legal_hold")

    await sergeant.send(got.room_id, "!unhold")
    await until(lambda: not held(matrix_env, visitor.chat_id), 60, "the hold lifted", interval=0.2)
    assert (await visitor.http("DELETE", path))[0] == 202
    assert [a for a in audit_of(matrix_env, visitor.chat_id) if a[0].startswith(("legal_hold", "chat.erase"))] == [
        ("legal_hold.set", "ok"), ("chat.erase", "refused"), ("legal_hold.lifted", "ok"), ("chat.erase", "ok")]
