"""One citizen's WebSocket flood against the real bridge and Synapse (issue 10): the message rate
(rate_limited, nothing stored, the socket stays open), typing coalesced, socket caps, and /health
answering while a flood goes on.  Defaults are the product's own (web.chat_message_burst 20 …)."""
from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid

import aiohttp
import pytest

from tests.conftest import MatrixEnv
from tests.support.bridge_db import room_of, rows
from tests.support.visitor import Visitor
from tests.support.waiting import until

BURST = 20                     # web.chat_message_burst default
TYPING_INTERVAL = 3.0          # web.typing_interval_seconds default
PER_CHAT = 5                   # web.max_sockets_per_chat default
PER_ADDRESS = 50               # web.max_sockets_per_address default


def _rows(env: MatrixEnv, sql: str, args: list) -> list[tuple]:
    return rows(env.db_path, sql, args)


async def _metric(env: MatrixEnv, name: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(env.metrics_url) as r:
            text = await r.text()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def _answer(v: Visitor, client_id: str, body: str) -> dict:
    """Send a message frame; its ack or its error frame."""
    start = len(v.frames)
    await v.ws.send_json({"type": "message", "client_id": client_id, "body": body})
    return await until(lambda: next((f for f in v.frames[start:] if f.get("client_id") == client_id
                                     and f.get("type") in ("ack", "error")), None), 60, f"an answer to {client_id}")


def _from(address: str) -> aiohttp.ClientSession:
    """A client whose sockets come from another loopback address, so the per-address cap of the
    shared bridge (all other tests come from 127.0.0.1) is this test's alone."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0))


async def test_messages_over_the_rate_are_refused_unstored_and_go_later(visitors, matrix_env: MatrixEnv):
    v: Visitor = visitors()
    await v.create(topic="general")
    await v.connect()
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{i}" for i in range(BURST + 10)]
    for i, cid in enumerate(ids):                   # pasted all at once, faster than anyone types
        await v.ws.send_json({"type": "message", "client_id": cid, "body": f"pasted {i}"})
    answered = lambda: [f for f in v.frames if f.get("type") in ("ack", "error") and f.get("client_id") in ids]
    await until(lambda: len(answered()) == len(ids) or None, 60, "an answer to every message")
    acked = {f["client_id"] for f in answered() if f["type"] == "ack"}
    refused = [f for f in answered() if f["type"] == "error"]
    assert len(acked) >= BURST, "a burst of pasted messages must never be refused"
    assert refused, "messages beyond the burst, sent at once, are refused"
    for f in refused:
        assert f["error"] == "rate_limited" and isinstance(f["retry_after"], int) and f["retry_after"] >= 1, f
        assert f["message"]
    refused_ids = [f["client_id"] for f in refused]
    stored = _rows(matrix_env, "SELECT client_id FROM messages WHERE chat_id = ? AND sender_kind = 'visitor'",
                   [v.chat_id])
    assert {r[0] for r in stored} == acked                   # nothing of a refused message is stored
    assert not v.ws.closed                                      # the socket stays open

    # POST …/messages shares the limit: 429, Retry-After, the same error code.
    status, body = await v.http("POST", f"/api/v1/chats/{v.chat_id}/messages",
                                json={"client_id": f"{run}-post", "body": "by post"})
    assert status == 429 and body["error"] == "rate_limited" and body["retry_after"] >= 1, body

    # A resend of a stored message (its ack lost on a reconnect) is answered from the store, even now.
    again = await _answer(v, sorted(acked)[0], "pasted again")
    assert again["type"] == "ack", again

    # Sent again after retry_after (as the page does), the first refused message arrives.
    first = refused_ids[0]

    async def resent() -> bool | None:
        answer = await _answer(v, first, "pasted again")
        if answer["type"] == "ack":
            return True
        await asyncio.sleep(answer["retry_after"])    # the server's own instruction, as the page follows it
        return None
    await until(resent, 120, "the refused message accepted after retry_after")
    assert _rows(matrix_env, "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND client_id = ?",
                 [v.chat_id, first])[0][0] == 1


async def test_a_typing_flood_makes_a_bounded_number_of_homeserver_calls(visitors, matrix_env: MatrixEnv):
    v: Visitor = visitors()
    await v.create(topic="general")
    await v.connect()
    await v.send("hello, about my bike")
    await room_of(matrix_env.db_path, v.chat_id, timeout=120)     # the chat has its room and puppet
    before = await _metric(matrix_env, "precinct_typing_calls_total")
    started = time.monotonic()
    frames = 5000
    for i in range(frames):
        await v.ws.send_str(json.dumps({"type": "typing", "active": i % 2 == 0}))
    await v.ws.send_json({"type": "typing", "active": False})
    # The flood was read when the bridge answers a message sent after it.
    await v.send("still here")
    # Settled: no new call for more than an interval.
    last = {"n": -1.0, "at": time.monotonic()}

    async def settled() -> float | None:
        n = await _metric(matrix_env, "precinct_typing_calls_total")
        if n != last["n"]:
            last.update(n=n, at=time.monotonic())
            return None
        return n if time.monotonic() - last["at"] > 2 * TYPING_INTERVAL else None
    after = await until(settled, 120, "typing calls settled")
    elapsed = time.monotonic() - started
    calls = after - before
    assert 1 <= calls <= 2 + math.ceil(elapsed / TYPING_INTERVAL), (calls, elapsed)
    assert not v.ws.closed


async def test_sockets_over_the_caps_are_refused(visitors, matrix_env: MatrixEnv):
    v: Visitor = visitors()
    await v.create(topic="general")
    # Per chat: PER_CHAT authenticated sockets; the next gets an error frame and close code 4429.
    async with _from("127.0.0.71") as http:
        socks = []
        try:
            for _ in range(PER_CHAT):
                ws = await http.ws_connect(v.ws_url)
                await ws.send_json({"type": "auth", "token": v.token, "since": 0})
                assert (await ws.receive_json(timeout=30))["type"] == "ready"
                socks.append(ws)
            ws = await http.ws_connect(v.ws_url)
            socks.append(ws)
            await ws.send_json({"type": "auth", "token": v.token, "since": 0})
            frame = await ws.receive_json(timeout=30)
            assert frame["type"] == "error" and frame["error"] == "too_many_connections", frame
            assert (await ws.receive(timeout=30)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 4429
            # One closed: a new one is welcome again.
            await socks[0].close()
            ws = await http.ws_connect(v.ws_url)
            socks.append(ws)
            await ws.send_json({"type": "auth", "token": v.token, "since": 0})
            assert (await ws.receive_json(timeout=30))["type"] == "ready"
        finally:
            for s in socks:
                await s.close()

    # Per address: PER_ADDRESS sockets that never authenticate; the next is refused before the upgrade.
    async with _from("127.0.0.72") as http:
        socks = []
        try:
            for _ in range(PER_ADDRESS):
                socks.append(await http.ws_connect(v.ws_url))
            headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            async with http.get(v.ws_url.replace("ws", "http", 1), headers=headers) as r:
                assert r.status == 429 and r.headers.get("Retry-After"), r.status
                body = await r.json()
                assert body["error"] == "too_many_connections" and body["message"], body
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(v.ws_url)
            assert refused.value.status == 429
        finally:
            for s in socks:
                await s.close()
        # Closed ones are counted out: the address may connect again.
        async def again() -> bool | None:
            try:
                ws = await http.ws_connect(v.ws_url)
            except aiohttp.WSServerHandshakeError:
                await asyncio.sleep(0.2)
                return None
            await ws.close()
            return True
        await until(again, 60, "a socket accepted once the others closed")
    # Another address (the rest of the test suite) was never affected.
    await v.connect()


async def test_health_answers_during_a_message_and_typing_flood(visitors, matrix_env: MatrixEnv):
    v: Visitor = visitors()
    await v.create(topic="general")
    await v.connect()
    await v.send("hello")
    await room_of(matrix_env.db_path, v.chat_id, timeout=120)
    run = uuid.uuid4().hex[:8]
    health: list[int] = []
    done = asyncio.Event()

    async def poll() -> None:
        async with aiohttp.ClientSession() as http:
            while not done.is_set() and len(health) < 2000:
                async with http.get(matrix_env.public_url + "/health") as r:
                    health.append(r.status)

    poller = asyncio.create_task(poll())
    try:
        for i in range(2000):
            await v.ws.send_json({"type": "message", "client_id": f"{run}-{i}", "body": f"flood {i}"})
        for i in range(20000):
            await v.ws.send_str(json.dumps({"type": "typing", "active": i % 2 == 0}))
        await _answer(v, f"{run}-after", "after the flood")   # answered: the bridge has read the whole flood
        await until(lambda: len(health) >= 3 or None, 60, "/health answered during the flood")
    finally:
        done.set()
        await poller
    assert health and all(s == 200 for s in health), health[:20]
    assert not v.ws.closed
