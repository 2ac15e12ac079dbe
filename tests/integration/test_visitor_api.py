"""Visitor API v1 under bad input: clear errors, nothing lost, the chat and the connection carry on."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import MatrixEnv
from tests.support.visitor import Visitor


@pytest.fixture
async def visitor(matrix_env: MatrixEnv):
    v = Visitor(matrix_env.public_url)
    await v.create(topic="general", display_name="Alex")
    yield v
    await v.close()


def _is_error(body, code: str) -> bool:
    return isinstance(body, dict) and body.get("error") == code and isinstance(body.get("message"), str) \
        and body["message"]


async def test_create_chat_validation(matrix_env: MatrixEnv):
    base = matrix_env.public_url + "/api/v1/chats"
    async with aiohttp.ClientSession() as s:
        cases = [(b"{not json", 400, "invalid_json"), (b"[1,2]", 400, "invalid_json"),
                 (b'{"topic": "no-such-topic"}', 400, "bad_request"), (b'{"topic": 5}', 400, "bad_request"),
                 (b'{"display_name": "' + b"x" * 65 + b'"}', 400, "bad_request")]
        for data, status, code in cases:
            async with s.post(base, data=data) as r:
                body = await r.json()
                assert r.status == status and _is_error(body, code), (data, r.status, body)
                assert "Traceback" not in str(body)
        async with s.post(base, json={}) as r:
            created = await r.json()
            assert r.status == 201
        assert len(created["token"]) >= 43            # 256 bits, URL-safe base64
        assert created["ws_url"].startswith("ws://127.0.0.1")
        async with s.get(matrix_env.public_url + "/api/v1/nothing-here") as r:
            assert r.status == 404 and _is_error(await r.json(), "not_found")
        async with s.post(base, data=b"x" * (2 * 1024 * 1024)) as r:
            assert r.status == 413 and _is_error(await r.json(), "too_large")
        async with s.get(matrix_env.public_url + "/health") as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]


async def test_http_auth_errors_and_no_oracle(matrix_env: MatrixEnv, visitor: Visitor):
    other = Visitor(matrix_env.public_url)
    await other.create()
    try:
        path = f"/api/v1/chats/{visitor.chat_id}/messages"
        assert (await visitor.http("GET", path))[0] == 200
        status, body = await visitor.http("GET", path, token="")
        assert status == 401 and _is_error(body, "unauthorized")
        status, body = await visitor.http("GET", path, token="not-a-real-token")
        assert status == 401 and _is_error(body, "unauthorized")
        # My token on someone else's chat looks exactly like a chat that does not exist.
        status, body = await visitor.http("GET", f"/api/v1/chats/{other.chat_id}/messages")
        assert status == 404 and _is_error(body, "not_found")
        status, body2 = await visitor.http("GET", "/api/v1/chats/does-not-exist/messages")
        assert status == 404 and body2 == body
        for since in ("-1", "abc"):
            status, body = await visitor.http("GET", path + f"?since={since}")
            assert status == 400 and _is_error(body, "bad_request")
    finally:
        await other.close()


async def test_http_send_limits_and_idempotence(matrix_env: MatrixEnv, visitor: Visitor):
    path = f"/api/v1/chats/{visitor.chat_id}/messages"
    status, body = await visitor.http("POST", path, json={"client_id": "c-long", "body": "x" * 4001})
    assert status == 413 and _is_error(body, "message_too_long") and "4000" in body["message"]
    status, body = await visitor.http("POST", path, json={"client_id": "c-max", "body": "y" * 4000})
    assert status == 201
    for bad in ({"body": "no client id"}, {"client_id": "", "body": "x"}, {"client_id": "c1", "body": ""},
                {"client_id": "c1", "body": 7}, {"client_id": "c1"}):
        status, body = await visitor.http("POST", path, json=bad)
        assert status == 400 and _is_error(body, "bad_request"), bad
    status, body = await visitor.http("POST", path, data=b"{oops")
    assert status == 400 and _is_error(body, "invalid_json")
    s1, first = await visitor.http("POST", path, json={"client_id": "same-1", "body": "only once"})
    s2, second = await visitor.http("POST", path, json={"client_id": "same-1", "body": "only once"})
    assert s1 == s2 == 201 and first == second
    status, listing = await visitor.http("GET", path + "?since=0")
    visitor_bodies = [m["body"] for m in listing["messages"] if m["from"] == "visitor"]
    assert visitor_bodies == ["y" * 4000, "only once"], "the long message must not be stored, truncated or not"
    # Closing, then writing, is refused clearly.
    assert (await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/close"))[0] == 200
    status, body = await visitor.http("POST", path, json={"client_id": "after-close", "body": "hello?"})
    assert status == 409 and _is_error(body, "chat_closed")
    status, listing = await visitor.http("GET", path + "?since=0")
    assert listing["state"] == "closed"
    assert listing["messages"][-1]["from"] == "system"


async def test_websocket_survives_client_errors(matrix_env: MatrixEnv, visitor: Visitor):
    ready = await visitor.connect()
    # Nobody answers this agency in this test (no officer runs), so it queues: its place and the estimate
    # (null until enough real waits on the topic are known, else whole seconds).
    assert ready["state"] == "waiting"
    assert isinstance(ready["position"], int) and ready["position"] >= 1
    assert ready["estimate_seconds"] is None or (isinstance(ready["estimate_seconds"], int)
                                                 and ready["estimate_seconds"] >= 1)
    ws = visitor.ws
    await ws.send_str("{not json")
    await visitor.wait_frame(lambda f: f.get("error") == "invalid_json", what="invalid_json frame")
    await ws.send_json({"type": "shout"})
    await visitor.wait_frame(lambda f: f.get("error") == "bad_frame", what="bad_frame")
    await ws.send_json({"type": "message", "client_id": "too-long", "body": "z" * 4001})
    await visitor.wait_frame(lambda f: f.get("error") == "message_too_long", what="message_too_long")
    await ws.send_json({"type": "typing", "active": "yes"})
    await visitor.wait_frame(lambda f: f.get("type") == "error" and "active" in f.get("message", ""),
                             what="typing error")
    await ws.send_bytes(b"\x00\x01")
    await visitor.wait_frame(lambda f: f.get("type") == "error" and "Binary" in f.get("message", ""),
                             what="binary error")
    for f in visitor.frames:
        if f.get("type") == "error":
            assert set(f) - {"client_id"} == {"type", "error", "message"} and f["message"]
    too_long = next(f for f in visitor.frames if f.get("error") == "message_too_long")
    assert too_long["client_id"] == "too-long", "an error about a message names that message"
    # Still connected and working; resending a client_id gives the same ack.
    ack1 = await visitor.send("still here", client_id="ws-1")
    visitor.frames.clear()
    ack2 = await visitor.send("still here", client_id="ws-1")
    assert ack1 == ack2
    msgs = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}/messages")
    assert [m["body"] for m in msgs[1]["messages"] if m["from"] == "visitor"] == ["still here"]


async def test_websocket_auth_errors(matrix_env: MatrixEnv, visitor: Visitor):
    other = Visitor(matrix_env.public_url)
    await other.create()
    try:
        async with aiohttp.ClientSession() as s:
            for token, chat_url, code, close in (("wrong", visitor.ws_url, "unauthorized", 4401),
                                                 (visitor.token, other.ws_url, "not_found", 4404)):
                ws = await s.ws_connect(chat_url)
                await ws.send_json({"type": "hello"})
                first = await ws.receive_json(timeout=10)
                assert first["type"] == "error" and first["error"] == "bad_frame"
                await ws.send_json({"type": "auth", "token": token, "since": 0})
                err = await ws.receive_json(timeout=10)
                assert err == {"type": "error", "error": code, "message": err["message"]}
                closing = await ws.receive(timeout=10)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == close
                await ws.close()
    finally:
        await other.close()


async def test_site_settings_for_the_citizen_page(matrix_env: MatrixEnv):
    async with aiohttp.ClientSession() as s:
        async with s.get(matrix_env.public_url + "/api/v1/site") as r:
            site = await r.json()
            assert r.status == 200
    assert site["emergency_number"] == "999" and "service_name" in site
    # Each topic says whether its agency is open now; the test "closed" agency has no opening hours at all.
    assert site["topics"] == [{"id": t["id"], "label": t["label"], "open": t["agency"] != "closed"}
                              for t in matrix_env.config["topics"]]
    assert site["max_message_chars"] == 4000
    assert site["quick_exit_url"] == matrix_env.config["site"]["quick_exit_url"]
    text = str(site)
    for secret in (matrix_env.config["appservice"]["as_token"], matrix_env.config["crypto"]["pickle_key"]):
        assert secret not in text


@pytest.mark.agency
async def test_a_burst_of_closes_ahead_gives_a_waiting_citizen_at_most_one_queue_frame_a_second(
        matrix_env: MatrixEnv, agency, visitors):
    """Issue 11: every close moves the queue; a waiting citizen's page hears of it at most once a second,
    and the last word it hears is its true place. In an agency of its own: the 21 chats are the whole queue."""
    ahead = [visitors() for _ in range(20)]
    for v in ahead:
        await v.create(topic=agency.topic)
    waiting = visitors()
    await waiting.create(topic=agency.topic)
    ready = await waiting.connect()
    assert ready["state"] == "waiting" and ready["position"] == 21
    loop = asyncio.get_running_loop()
    started = loop.time()
    for v in ahead:                               # one after another: twenty moves of the queue
        status, body = await v.http("POST", f"/api/v1/chats/{v.chat_id}/close", json={})
        assert status == 200, body
    status, body = await waiting.http("GET", f"/api/v1/chats/{waiting.chat_id}")
    assert status == 200 and body["position"] == 1, (ready, body)
    await waiting.wait_frame(lambda f: f.get("type") == "status" and f.get("position") == body["position"], 30,
                             "a status frame with the place after the closes")
    elapsed = loop.time() - started
    frames = [f for f in waiting.frames if f.get("type") == "status"]
    # Frames at least a second apart: in `elapsed` seconds no more than elapsed + 1 of them, where one
    # frame per close would have been 20 within the moment the closes took.
    assert len(frames) <= int(elapsed) + 1, (len(frames), elapsed)
    assert frames[-1]["position"] == body["position"]
