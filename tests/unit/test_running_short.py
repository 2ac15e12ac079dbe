"""The visitor API when a resource runs short (bridge/resources.py): new chats get 503 "busy" with the numbers
to call — from the descriptor reserve before anything is stored, or when SQLite or the OS says a resource ran
out — never a 500; a WebSocket frame gets a "busy" error frame on a socket that stays open; the public
listener answers new connections busy and closes them when descriptors are almost gone. Logged once."""
from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.resources import OpenFiles, Shortages
from bridge.store import Store
from bridge.web import visitor_api
from bridge.web.server import GuardedSite, busy_answer, public_app
from tests.support.configs import example_config


def _files(open_now: int, limit: int = 1024) -> OpenFiles:
    return OpenFiles(count=lambda: open_now, limit=lambda: limit, max_age=0)


async def _server(tmp_path, open_files: OpenFiles | None = None):
    config = example_config(tmp_path)
    store = Store.open(tmp_path / "p.db")
    chats = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    chats.start_setup = lambda chat_id: None
    shortages = Shortages(open_files)
    api = visitor_api.VisitorApi(config, store, chats, open_files=open_files, shortages=shortages)
    server = TestServer(public_app(api, durable=store.db.durable, shortages=shortages))
    await server.start_server()
    return server, chats, store, config


def _is_busy(status: int, body: dict, config) -> bool:
    return (status == 503 and body["error"] == "busy" and body["retry_after"] == 60
            and body["phone_number"] == (config.get("site.phone_number") or None)
            and body["emergency_number"] == config.get("site.emergency_number"))


async def test_a_new_chat_within_the_descriptor_reserve_is_busy_and_nothing_is_stored(tmp_path, caplog):
    server, chats, store, config = await _server(tmp_path, _files(1024 - 100))     # reserve 128: short
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            async with s.post(server.make_url("/api/v1/chats"), json={"consent": True}) as r:
                assert _is_busy(r.status, await r.json(), config), await r.text()
                assert r.headers["Retry-After"] == "60"
    assert store.db.row("SELECT COUNT(*) AS n FROM chats")["n"] == 0
    assert len([r for r in caplog.records if "resources short (new chats)" in r.getMessage()]) == 1
    await server.close()
    store.close()


async def test_sqlite_or_the_os_running_out_is_busy_not_500(tmp_path, caplog):
    server, chats, store, config = await _server(tmp_path)
    errors = iter([sqlite3.OperationalError("unable to open database file"), OSError(errno.EMFILE, "Too many "
                   "open files"), MemoryError(), OSError(errno.ENFILE, "File table overflow")])

    def short(*args, **kwargs):
        raise next(errors)
    chats.open = short                                       # type: ignore[method-assign]
    async with aiohttp.ClientSession() as s:
        for _ in range(4):                                   # within the address's burst of new chats
            async with s.post(server.make_url("/api/v1/chats"), json={"consent": True}) as r:
                assert _is_busy(r.status, await r.json(), config), await r.text()
    assert "unexpected error" not in caplog.text and "Traceback" not in caplog.text
    assert len([r for r in caplog.records if "resources short (request)" in r.getMessage()]) == 1
    await server.close()
    store.close()


async def test_a_frame_that_runs_short_is_answered_busy_and_the_socket_stays(tmp_path, caplog):
    server, chats, store, config = await _server(tmp_path)
    chat, token = chats.open(None, None, None)
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
        await ws.send_json({"type": "auth", "token": token, "since": 0})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        real = chats.visitor_message

        def short(*args, **kwargs):
            raise sqlite3.OperationalError("unable to open database file")
        chats.visitor_message = short                        # type: ignore[method-assign]
        await ws.send_json({"type": "message", "client_id": "a", "body": "b"})
        frames = [await ws.receive_json(timeout=5) for _ in range(2)]       # the queue notice and the error
        error = next(f for f in frames if f["type"] == "error")
        assert error["error"] == "busy" and error["client_id"] == "a", error
        chats.visitor_message = real                         # type: ignore[method-assign]
        await ws.send_json({"type": "message", "client_id": "a", "body": "b"})
        answers = [(await ws.receive_json(timeout=5))["type"] for _ in range(2)]   # the ack and the message
        assert "ack" in answers, answers
        await ws.close()
    assert "unexpected error" not in caplog.text
    await server.close()
    store.close()


async def test_the_public_listener_answers_new_connections_busy_when_descriptors_are_almost_gone(tmp_path):
    config = example_config(tmp_path)
    open_now = [100]
    files = OpenFiles(count=lambda: open_now[0], limit=lambda: 1024, max_age=0)
    app = web.Application()
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    store = Store.open(tmp_path / "p.db")
    api = visitor_api.VisitorApi(config, store, None)                     # type: ignore[arg-type]
    site = GuardedSite(runner, "127.0.0.1", 0, files, Shortages(files), busy_answer(api.busy()))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]                       # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/health") as r:
                assert r.status == 200
        open_now[0] = 1024 - 40                                            # under half the reserve (64) free
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)                 # to the end: the listener closes
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
        assert b"Retry-After: 60" in answer and b'"error": "busy"' in answer
        async with aiohttp.ClientSession() as s:                           # aiohttp reads it as a 503 too
            async with s.get(f"http://127.0.0.1:{port}/health") as r:
                assert r.status == 503 and (await r.json())["error"] == "busy"
        open_now[0] = 100
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/health") as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
        store.close()
