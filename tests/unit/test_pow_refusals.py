"""Every refusal path of chat creation raises the proof of work (the visitor API with a real store and chat
service, no homeserver: a chat is a row until its first message): a blocked source (403) and a full
queue (503) and a rate-limited source (429). A request refused for its proof does not."""
from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.store import Store
from bridge.web import pow
from bridge.web.pow import DifficultyRule, PowGate
from bridge.web.server import public_app
from bridge.web.visitor_api import VisitorApi
from tests.support.configs import example_config

RULE = DifficultyRule(base_bits=4, max_bits=10, refusals_per_bit=1, half_life_seconds=3600)


async def _server(tmp_path, **values):  # type: ignore[no-untyped-def]
    config = example_config(tmp_path)
    config.values.update(values)
    store = Store.open(tmp_path / "p.db")
    chats = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    gate = PowGate(True, RULE, 60, pow.derive_key(config.get("crypto.pickle_key")))
    server = TestServer(public_app(VisitorApi(config, store, chats, pow_gate=gate), durable=store.db.durable),
                        host="127.0.0.1")
    await server.start_server()
    return server, store, chats, gate


async def _create(http: aiohttp.ClientSession, server: TestServer, gate: PowGate, **body) -> tuple[int, dict]:
    issued = gate.issue()
    proof = {"challenge": issued["challenge"], "answer": pow.solve(issued["challenge"], issued["difficulty"])[0]}
    async with http.post(server.make_url("/api/v1/chats"), json={"pow": proof, **body}) as r:
        return r.status, await r.json()


async def test_a_blocked_source_raises_the_difficulty(tmp_path):
    server, store, chats, gate = await _server(tmp_path)
    try:
        chat, _ = chats.open(None, None, None)
        store.sources.remember(chat.id, "127.0.0.1")
        assert store.sources.block(chat.id, "@officer:example", None, 3600) is not None
        async with aiohttp.ClientSession() as http:
            for expected_bits in (5, 6):
                status, body = await _create(http, server, gate)
                assert (status, body["error"]) == (403, "blocked")
                assert gate.difficulty() == expected_bits
            async with http.post(server.make_url("/api/v1/chats"), json={}) as r:
                assert (r.status, (await r.json())["error"]) == (400, "pow_required")
            assert gate.difficulty() == 6, "a request refused for its proof costs nothing and raises nothing"
    finally:
        await server.close()
        store.close()


async def test_a_full_queue_raises_the_difficulty(tmp_path):
    server, store, chats, gate = await _server(tmp_path, **{"chats.max_waiting_per_agency": 1})
    try:
        async with aiohttp.ClientSession() as http:
            assert (await _create(http, server, gate))[0] == 201
            assert gate.difficulty() == 4
            status, body = await _create(http, server, gate)
            assert (status, body["error"]) == (503, "busy")
            assert gate.difficulty() == 5
    finally:
        await server.close()
        store.close()


async def test_a_rate_limited_creation_raises_the_difficulty(tmp_path):
    server, store, chats, gate = await _server(tmp_path, **{"limits.chats_per_address": {"burst": 2, "per_hour": 1}})
    try:
        async with aiohttp.ClientSession() as http:
            assert [(await _create(http, server, gate))[0] for _ in range(2)] == [201, 201]
            assert gate.difficulty() == 4
            for expected_bits in (5, 6):
                status, body = await _create(http, server, gate)
                assert (status, body["error"]) == (429, "rate_limited")
                assert gate.difficulty() == expected_bits
    finally:
        await server.close()
        store.close()
