"""The WebSocket's authentication phase (bridge/web/visitor_api.py), with the Matrix side left out."""
from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp.test_utils import TestServer

from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.store import Store
from bridge.web import visitor_api
from bridge.web.server import public_app
from tests.support.configs import example_config


async def _server(tmp_path):
    config = example_config(tmp_path)
    store = Store.open(tmp_path / "p.db")
    chats = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    chats.start_setup = lambda chat_id: None
    server = TestServer(public_app(visitor_api.VisitorApi(config, store, chats), durable=store.db.durable))
    await server.start_server()
    return server, chats, store


async def _closed(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> bool:
    try:
        while (await ws.receive(timeout=timeout)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        return True
    except asyncio.TimeoutError:
        return False


async def test_auth_deadline_is_not_reset_by_junk_frames(tmp_path, monkeypatch):
    monkeypatch.setattr(visitor_api, "AUTH_TIMEOUT", 1.0)
    server, chats, store = await _server(tmp_path)
    chat, _ = chats.open(None, None, None)
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
        closed = False
        for _ in range(20):                           # keep sending junk, well past the deadline
            await ws.send_str('{"type": "hello"}')
            if closed := await _closed(ws, 0.25):
                break
        assert closed and ws.close_code == 4401
    await server.close()
    store.close()


async def test_since_beyond_the_last_message_still_gets_new_messages(tmp_path):
    server, chats, store = await _server(tmp_path)
    chat, token = chats.open(None, None, None)       # seq 1: the queue notice
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
        await ws.send_json({"type": "auth", "token": token, "since": 99})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        # A page that has seen more than the store holds (restored from a backup, docs/deployment.md) is told,
        # under a seq past its own, and what follows comes after it: nothing new under a seq it already shows.
        told = await ws.receive_json(timeout=5)
        assert told["type"] == "message" and told["code"] == "restored" and told["seq"] == 100, told
        await ws.send_json({"type": "message", "client_id": "x", "body": "hello"})
        frames = [await ws.receive_json(timeout=5) for _ in range(2)]
        assert {f["type"] for f in frames} == {"ack", "message"}
        assert next(f for f in frames if f["type"] == "message")["seq"] == 101
        # Told once: the page is no longer ahead. And a claim far past anything is only confusion (no notice).
        for since in (99, 101 + 10_001):
            ws3 = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
            await ws3.send_json({"type": "auth", "token": token, "since": since})
            assert (await ws3.receive_json(timeout=5))["type"] == "ready"
            await ws3.close()
        assert [m.code for m in store.messages.since(chat.id, 0)].count("restored") == 1
        assert store.messages.last_seq(chat.id) == 101
        for bad in ("5", 5.9, True, -1):
            ws2 = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
            await ws2.send_json({"type": "auth", "token": token, "since": bad})
            err = await ws2.receive_json(timeout=5)
            assert err["type"] == "error" and err["error"] == "bad_request", bad
            await ws2.close()
        await ws.close()
    await server.close()
    store.close()


async def test_client_leaving_before_auth_is_not_logged_as_an_error(tmp_path, caplog):
    server, chats, store = await _server(tmp_path)
    chat, _ = chats.open(None, None, None)
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
        await ws.close()
        ws = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
        await ws.send_str("x" * (visitor_api.MAX_FRAME_BYTES + 10))
        assert await _closed(ws, 5)
    await server.close()                              # waits for the handlers to finish
    store.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_message_errors_name_the_message_and_shutdown_closes_sockets_at_once(tmp_path):
    server, chats, store = await _server(tmp_path)
    chat, token = chats.open(None, None, None)
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
        await ws.send_json({"type": "auth", "token": token, "since": 0})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        await ws.receive_json(timeout=5)                       # the queue notice, seq 1
        await ws.send_json({"type": "message", "client_id": "long-1", "body": "x" * 5000})
        err = await ws.receive_json(timeout=5)
        assert err["error"] == "message_too_long" and err["client_id"] == "long-1"
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.close()                                   # aiohttp would wait up to 60 s for open sockets
        assert loop.time() - started < 10
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1001
    store.close()


async def test_websocket_origin_is_checked_and_only_agency_sites_may_frame_the_page(tmp_path):
    server, chats, store = await _server(tmp_path)       # example config: embeds from https://www.police.example
    chat, token = chats.open(None, None, None)
    url = server.make_url(f"/api/v1/chats/{chat.id}/ws")
    async with aiohttp.ClientSession() as s:
        for origin in ("https://www.police.example", "http://127.0.0.1:8080"):   # an agency site; our own
            ws = await s.ws_connect(url, origin=origin)
            await ws.send_json({"type": "auth", "token": token, "since": 0})
            assert (await ws.receive_json(timeout=5))["type"] == "ready"
            await ws.close()
        for origin in ("https://evil.example", "https://www.police.example.evil.org", "null"):
            async with s.get(url, headers={"Origin": origin, "Connection": "Upgrade", "Upgrade": "websocket",
                                           "Sec-WebSocket-Version": "13",
                                           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
                assert r.status == 403, origin
                assert (await r.json())["error"] == "origin_not_allowed"
        async with s.get(server.make_url("/api/v1/site")) as r:
            csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://www.police.example" in csp
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    await server.close()
    store.close()
