"""The last resort when the bridge itself has a bug: logged, and the client gets a plain error, never a stack
trace (HTTP: JSON 500; WebSocket frame: an `internal_error` frame on a socket that stays open; WebSocket auth
phase: close 1011, no HTTP written into the upgraded stream; appservice: M_UNKNOWN). The bugs are injected."""
from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from bridge.appservice.endpoint import AppserviceEndpoint
from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.store import Store
from bridge.web import visitor_api
from bridge.web.server import public_app
from tests.support.configs import example_config


class Bug(Exception):
    pass


def _bug(*args, **kwargs):
    raise Bug("an injected bug with a secret detail")


async def _server(tmp_path):
    config = example_config(tmp_path)
    store = Store.open(tmp_path / "p.db")
    chats = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    chats.start_setup = lambda chat_id: None
    server = TestServer(public_app(visitor_api.VisitorApi(config, store, chats), durable=store.db.durable))
    await server.start_server()
    return server, chats, store


async def test_http_bug_is_a_json_500_without_a_trace(tmp_path, caplog):
    server, chats, store = await _server(tmp_path)
    chat, token = chats.open(None, None, None)
    chats.visitor_message = _bug                             # type: ignore[method-assign]
    async with aiohttp.ClientSession() as s:
        async with s.post(server.make_url(f"/api/v1/chats/{chat.id}/messages"), json={"client_id": "a", "body": "b"},
                          headers={"Authorization": f"Bearer {token}"}) as r:
            text = await r.text()
            assert r.status == 500 and (await r.json())["error"] == "internal_error"
    assert "secret detail" not in text and "Traceback" not in text and "Bug" not in text
    assert "secret detail" in caplog.text                   # but the operator sees it
    await server.close()
    store.close()


async def test_websocket_bugs_never_send_http_or_a_trace(tmp_path, caplog):
    server, chats, store = await _server(tmp_path)
    chat, token = chats.open(None, None, None)
    url = server.make_url(f"/api/v1/chats/{chat.id}/ws")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(url)
        await ws.send_json({"type": "auth", "token": token, "since": 0})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        real = chats.visitor_message
        chats.visitor_message = _bug                         # type: ignore[method-assign]
        await ws.send_json({"type": "message", "client_id": "a", "body": "b"})
        frames = [await ws.receive_json(timeout=5) for _ in range(2)]       # the queue notice and the error
        error = next(f for f in frames if f["type"] == "error")
        assert error["error"] == "internal_error" and "secret" not in error["message"]
        chats.visitor_message = real                         # type: ignore[method-assign]
        await ws.send_json({"type": "message", "client_id": "c", "body": "still open"})
        answers = [(await ws.receive_json(timeout=5))["type"] for _ in range(2)]   # the ack and the message
        assert "ack" in answers, answers
        await ws.close()

        chats.authenticate = _bug                            # type: ignore[method-assign]
        ws = await s.ws_connect(url)
        await ws.send_json({"type": "auth", "token": token, "since": 0})
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1011, closing
    await server.close()
    store.close()
    assert "unexpected error on a frame" in caplog.text and "unexpected error on the WebSocket" in caplog.text


async def test_appservice_bug_is_m_unknown(tmp_path):
    store = Store.open(tmp_path / "p.db")
    endpoint = AppserviceEndpoint("hs-token", store.transactions, _bug, lambda user: False, store.db.durable)
    server = TestServer(endpoint.app())
    await server.start_server()
    async with aiohttp.ClientSession() as s:
        async with s.put(server.make_url("/_matrix/app/v1/transactions/1"), json={"events": []},
                         headers={"Authorization": "Bearer hs-token"}) as r:
            body = await r.json()
            assert r.status == 500 and body["errcode"] == "M_UNKNOWN" and "secret" not in body["error"]
    await server.close()
    store.close()
