"""Issue 13's store scenarios: crash during writes and disk full.

The two chaos scripts run reduced (``make chaos`` runs them in full; figures in docs/reliability.md), and
the faults the disk-full run found are pinned here against a real file system that fills: a small tmpfs
mounted for the test (the suite runs as root), the real store, the real visitor API and /health.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bridge.chats.hub import ChatHub
from bridge.chats.inbound import InboundPump
from bridge.chats.lifecycle import ChatService
from bridge.store import Store
from bridge.store.room_events import PENDING
from bridge.web import visitor_api
from bridge.web.server import public_app
from tests.integration.test_bench_guards import _run_bench
from tests.support.configs import example_config
from tests.support.disk import fill

DEADLINE = 30.0
# The reduced runs (started in the background at collection: tests/support/bench_runs.py).
WRITES = ("bench/chaos_writes.py", "--kills", "8", "--citizens", "3", "--seed", "5")
DISK_FULL = ("bench/chaos_disk_full.py", "--citizens", "2", "--messages", "2", "--full-seconds", "3", "--size-mb", "24")


def _result(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.bench(WRITES)
def test_reduced_crash_during_writes_loses_nothing_acknowledged_and_every_store_checks_ok():
    result = _result(_run_bench(*WRITES))
    assert result["kills"] == 8
    assert result["files_checked"] >= 8 * 2 and result["integrity_ok"] == result["files_checked"], result
    assert result["acknowledged"] > 8 and result["lost"] == 0, result


@pytest.mark.bench(DISK_FULL)
def test_reduced_disk_full_refuses_clearly_loses_nothing_and_recovers_by_itself():
    out = _run_bench(*DISK_FULL)
    result = _result(out)
    assert "MISSED" not in out, out[-3000:]
    assert result["refused"]["full"] == ["store_full"] and result["health_while_full"] == ["503 store_full"]
    assert result["acked"]["after"] == 4 and not result["acked_not_answered"], result


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs of the test's own, unmounted at the end."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)], check=True,
                   capture_output=True, timeout=30)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True, timeout=30)


async def test_a_full_disk_refuses_input_with_store_full_and_health_says_so_until_space_returns(
        tmp_path: Path, small_disk: Path):
    config = example_config(tmp_path)
    store = Store.open(small_disk / "precinct.db", group_commit=True)
    chats = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    chats.start_setup = lambda chat_id: None
    server = TestServer(public_app(visitor_api.VisitorApi(config, store, chats), durable=store.db.durable))
    await server.start_server()
    chat, token = chats.open(None, None, None)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
            await ws.send_json({"type": "auth", "token": token, "since": 0})
            assert (await ws.receive_json(timeout=DEADLINE))["type"] == "ready"

            async def say(client_id: str, body: str) -> dict:
                await ws.send_json({"type": "message", "client_id": client_id, "body": body})
                while True:
                    frame = await ws.receive_json(timeout=DEADLINE)
                    if frame.get("client_id") == client_id:
                        return frame
            assert (await say("before", "written before the disk filled"))["type"] == "ack"

            filler = fill(small_disk)
            refused = None
            for n in range(300):       # SQLite may first write into WAL space its file already has
                answer = await say(f"full-{n}", f"line {n} " + "x" * 2000)
                if answer["type"] == "error":
                    assert answer["error"] == "store_full" and answer["retry_after"] == 60, answer
                    refused = answer["client_id"]
                    break
                assert answer["type"] == "ack", answer
            assert refused is not None, "the full disk never refused a message"
            for n in range(25):        # past the chat's burst of 20: a message not stored costs no rate token
                answer = await say(f"still-full-{n}", f"still full {n}")
                assert answer["type"] == "error" and answer["error"] == "store_full", answer
            assert store.messages.by_client_id(chat.id, refused) is None        # nothing half-written
            async with http.post(server.make_url("/api/v1/chats"), json={"topic": "general"}) as r:
                body = await r.json()
                assert r.status == 503 and body["error"] == "store_full" and "Traceback" not in json.dumps(body)
            async with http.get(server.make_url("/health")) as r:
                assert r.status == 503 and (await r.json())["status"] == "store_full"

            filler.unlink()                     # space back: nothing restarted, nothing told
            async with http.get(server.make_url("/health")) as r:
                assert r.status == 200
            again = await say(refused, "the same line, sent again")
            assert again["type"] == "ack", again
            assert store.messages.by_client_id(chat.id, refused) is not None
            await ws.close()
    finally:
        await server.close()
        store.close()


def _disk_full_error(tmp_path: Path) -> sqlite3.OperationalError:
    """A real SQLITE_FULL from SQLite (a database capped at a few pages), to hand to the pump's handler."""
    conn = sqlite3.connect(tmp_path / "capped.db")
    try:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.execute("PRAGMA max_page_count = 3")
        conn.execute("INSERT INTO t VALUES (?)", ["x" * 100_000])
    except sqlite3.OperationalError as e:
        return e
    finally:
        conn.close()
    raise AssertionError("SQLite took a row past its page cap")


async def test_an_officer_event_that_meets_a_full_disk_waits_for_space_instead_of_being_set_aside(tmp_path: Path):
    store = Store.open(tmp_path / "precinct.db")
    full = _disk_full_error(tmp_path)
    handled: list[str] = []

    class Room:
        fail = True

        def owns(self, room_id: str) -> bool:
            return True

        async def adopt(self, item) -> bool:  # type: ignore[no-untyped-def]
            return False

        async def handle(self, item) -> bool:  # type: ignore[no-untyped-def]
            if self.fail:
                raise full
            handled.append(item.event_id)
            store.room_events.finish(item.stream)
            return True
    room = Room()
    pump = InboundPump(store, None, None, SimpleNamespace(bot="@bot:localhost"), [room])  # type: ignore[arg-type]
    try:
        for n in (1, 2):
            store.room_events.add({"event_id": f"$officer{n}", "room_id": "!chat:localhost", "type": "m.room.message",
                                   "sender": "@officer:localhost", "content": {"body": f"reply {n}"}})
        await pump.process_room("!chat:localhost")
        assert [e.event_id for e in store.room_events.pending("!chat:localhost")] == ["$officer1", "$officer2"]
        assert store.room_events.count(PENDING) == 2 and pump.failed_events == 0
        room.fail = False                       # space back: the next pass handles both, in order
        await pump.process_room("!chat:localhost")
        assert handled == ["$officer1", "$officer2"] and store.room_events.count(PENDING) == 0
    finally:
        store.close()
