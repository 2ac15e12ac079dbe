"""The store's durability barrier (store/db.py): commits are not synced on the event loop, and whatever
acknowledges waits for a flush of the real write-ahead log file that began after the commit.

The flush function is the only thing stood in for: ``Disk`` is handed each file descriptor the store's
flush thread would sync; it reads what the WAL file holds at that moment, can hold the flush until the
test lets it go, or fail it, and otherwise really syncs. Everything else is the real SQLite file, the real
visitor API, the real appservice endpoint and the real homeserver client.
"""
from __future__ import annotations

import asyncio
import errno
import os
import queue
import stat
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.appservice.endpoint import AppserviceEndpoint
from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.matrix.homeserver import HomeserverApi
from bridge.store import Store
from bridge.store import db as db_module
from bridge.store.db import Database, StoreNotDurable
from bridge.web import visitor_api
from bridge.web.server import public_app
from tests.support.configs import example_config

DEADLINE = 30.0


class Disk:
    """The store's flush function, observed. ``events`` is one timeline shared with the test."""

    def __init__(self, wal: Path, events: list[str] | None = None) -> None:
        self.wal = wal
        self.events = events if events is not None else []
        self.flushed: list[bytes] = []          # the WAL file's bytes as each flush found them
        self.folders = 0                        # directory syncs
        self.failure: OSError | None = None
        self._held = False
        self._go: queue.Queue[bool] = queue.Queue()
        self._started: queue.Queue[bytes] = queue.Queue()

    def __call__(self, fd: int) -> None:        # in the store's flush thread
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            self.folders += 1
            os.fsync(fd)
            return
        assert info.st_ino == os.stat(self.wal).st_ino, "the flush must sync the database's -wal file"
        content = os.pread(fd, info.st_size, 0)
        self.flushed.append(content)
        self.events.append("flush started")
        self._started.put(content)
        if self._held and not self._go.get(timeout=DEADLINE):
            raise AssertionError("never released")
        if self.failure is not None:
            raise self.failure
        os.fdatasync(fd)
        self.events.append("flush done")

    def hold(self) -> None:
        """From now on each flush waits for ``release()`` (and ``next_flush()`` waits for the next one)."""
        self._go, self._started = queue.Queue(), queue.Queue()
        self._held = True

    def release(self) -> None:
        self.events.append("released")
        self._go.put(True)

    def let_go(self) -> None:
        """Stop holding (and let a held flush finish)."""
        self._held = False
        self._go.put(True)

    async def next_flush(self) -> bytes:
        """Wait until a flush has started; the WAL's bytes as it found them."""
        return await asyncio.to_thread(self._started.get, timeout=DEADLINE)


def open_store(tmp_path: Path, events: list[str] | None = None) -> tuple[Store, Disk]:
    path = tmp_path / "precinct.db"
    disk = Disk(Path(f"{path}-wal"), events)
    return Store.on(Database(path, group_commit=True, flush=disk)), disk


def add_chat(store: Store, marker: str) -> None:
    store.chats.create(f"chat-{marker}", f"hash-{marker}", "general", "central", marker, None)


# ---- the barrier -------------------------------------------------------------------------------------

def test_the_bridge_commits_without_sync_and_tools_with_full_sync(tmp_path: Path):
    bridge = Store.open(tmp_path / "bridge.db", group_commit=True)
    tool = Store.open(tmp_path / "tool.db")
    try:
        assert bridge.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert bridge.db.execute("PRAGMA synchronous").fetchone()[0] == 1      # NORMAL: the barrier syncs
        assert tool.db.execute("PRAGMA synchronous").fetchone()[0] == 2        # FULL: every commit syncs
    finally:
        bridge.close()
        tool.close()


async def test_with_full_sync_there_is_nothing_to_wait_for(tmp_path: Path):
    path = tmp_path / "tool.db"
    disk = Disk(Path(f"{path}-wal"))
    db = Database(path, flush=disk)
    try:
        db.execute("INSERT INTO settings (key, value) VALUES ('a', 'b')")
        await db.durable()
        assert disk.flushed == [] and db.flushes == 0
    finally:
        db.close()


async def test_durable_returns_after_a_flush_of_the_wal_that_began_after_the_commit(tmp_path: Path):
    store, disk = open_store(tmp_path)
    try:
        disk.hold()
        add_chat(store, "first-words-A")
        waiter = asyncio.create_task(store.db.durable())
        wal = await disk.next_flush()
        assert b"first-words-A" in wal              # the commit was in the WAL file when its flush began
        assert not waiter.done()                    # and the flush is still going: no return yet
        disk.release()
        await asyncio.wait_for(waiter, DEADLINE)
        assert store.db.flushes == 1 and disk.events == ["flush started", "released", "flush done"]
    finally:
        disk.let_go()
        store.close()


async def test_a_commit_made_during_a_flush_waits_for_the_next_one(tmp_path: Path):
    store, disk = open_store(tmp_path)
    try:
        disk.hold()
        add_chat(store, "before-A")
        first = asyncio.create_task(store.db.durable())
        assert b"before-A" in await disk.next_flush()
        add_chat(store, "during-B")                 # committed while flush 1 runs: flush 1 may miss it
        second = asyncio.create_task(store.db.durable())
        disk.release()
        await asyncio.wait_for(first, DEADLINE)
        wal = await disk.next_flush()               # a second flush, begun after B's commit
        assert b"during-B" in wal and b"during-B" not in disk.flushed[0]
        assert not second.done()
        disk.release()
        await asyncio.wait_for(second, DEADLINE)
        assert store.db.flushes == 2
    finally:
        disk.let_go()
        store.close()


async def test_concurrent_waiters_share_one_flush(tmp_path: Path):
    store, disk = open_store(tmp_path)
    try:
        disk.hold()
        add_chat(store, "A")
        first = asyncio.create_task(store.db.durable())
        await disk.next_flush()
        waiters = []
        for marker in ("B", "C", "D"):              # three acks queue up while flush 1 runs
            add_chat(store, f"queued-{marker}")
            waiters.append(asyncio.create_task(store.db.durable()))
        disk.release()
        await asyncio.wait_for(first, DEADLINE)
        wal = await disk.next_flush()
        assert all(f"queued-{m}".encode() in wal for m in "BCD")
        assert not any(w.done() for w in waiters)
        disk.release()
        await asyncio.wait_for(asyncio.gather(*waiters), DEADLINE)
        assert store.db.flushes == 2 and len(disk.flushed) == 2       # one flush for all three

        disk.let_go()
        add_chat(store, "E")                        # five acks of one commit: one flush
        await asyncio.wait_for(asyncio.gather(*(store.db.durable() for _ in range(5))), DEADLINE)
        assert store.db.flushes == 3
    finally:
        disk.let_go()
        store.close()


async def test_a_mark_is_answered_by_the_first_flush_that_began_after_its_commit(tmp_path: Path):
    """An ack queued behind others waits for a flush that covers its own commit, not for the newest one."""
    store, disk = open_store(tmp_path)
    try:
        disk.hold()
        add_chat(store, "A")
        mark_a = store.db.mark()
        first = asyncio.create_task(store.db.durable(mark_a))
        await disk.next_flush()
        add_chat(store, "B")                        # committed after flush 1 began
        late_for_a = asyncio.create_task(store.db.durable(mark_a))      # asked late, but A is in flush 1
        for_b = asyncio.create_task(store.db.durable())
        disk.release()
        await asyncio.wait_for(asyncio.gather(first, late_for_a), DEADLINE)
        assert store.db.flushes == 1
        await disk.next_flush()
        assert not for_b.done()
        disk.release()
        await asyncio.wait_for(for_b, DEADLINE)
        assert store.db.flushes == 2
    finally:
        disk.let_go()
        store.close()


async def test_nothing_new_committed_means_no_flush_and_the_folder_is_synced_once(tmp_path: Path):
    store, disk = open_store(tmp_path)
    try:
        add_chat(store, "A")
        await store.db.durable()
        await store.db.durable()
        assert store.db.flushes == 1
        add_chat(store, "B")
        await store.db.durable()
        assert store.db.flushes == 2
        assert disk.folders == 1                    # the WAL file's name made durable the first time it was seen
    finally:
        store.close()


async def test_a_failed_flush_is_a_failure_for_every_waiter_and_stays_one(tmp_path: Path):
    store, disk = open_store(tmp_path)
    try:
        disk.hold()
        add_chat(store, "A")
        first = asyncio.create_task(store.db.durable())
        await disk.next_flush()
        add_chat(store, "B")
        queued = asyncio.create_task(store.db.durable())
        disk.failure = OSError(errno.EIO, "Input/output error")
        disk.release()
        for waiter in (first, queued):
            with pytest.raises(StoreNotDurable):
                await asyncio.wait_for(waiter, DEADLINE)
        assert store.db.failure is not None
        # Linux may have dropped the unwritten pages: nothing committed before can be promised, now or later.
        with pytest.raises(StoreNotDurable):
            await store.db.durable()
        add_chat(store, "C")
        with pytest.raises(StoreNotDurable):
            await store.db.durable()
    finally:
        disk.let_go()
        store.close()


async def test_a_file_that_cannot_be_opened_refuses_those_waiting_but_is_no_lasting_failure(tmp_path: Path,
                                                                                           monkeypatch):
    """Out of file descriptors (a flood of sockets) loses nothing: refuse now, flush again later."""
    store, disk = open_store(tmp_path)
    try:
        real_open = db_module._open

        def no_descriptors(path, flags=0):  # type: ignore[no-untyped-def]
            raise db_module._NotOpened(f"{path}: [Errno 24] Too many open files")
        monkeypatch.setattr(db_module, "_open", no_descriptors)
        add_chat(store, "A")
        with pytest.raises(StoreNotDurable):
            await asyncio.wait_for(store.db.durable(), DEADLINE)
        assert store.db.failure is None and disk.flushed == []
        monkeypatch.setattr(db_module, "_open", real_open)
        await asyncio.wait_for(store.db.durable(), DEADLINE)
        assert b"A" in disk.flushed[-1] and store.db.flushes == 1
    finally:
        store.close()


async def test_with_the_real_flush(tmp_path: Path):
    store = Store.open(tmp_path / "precinct.db", group_commit=True)
    try:
        add_chat(store, "A")
        await store.db.durable()
        assert store.db.flushes == 1 and store.db.failure is None
    finally:
        store.close()


# ---- everything that acknowledges waits for it ---------------------------------------------------------

async def _public(tmp_path: Path, events: list[str]):
    config = example_config(tmp_path)
    store, disk = open_store(tmp_path, events)
    chats = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    chats.start_setup = lambda chat_id: None
    server = TestServer(public_app(visitor_api.VisitorApi(config, store, chats), durable=store.db.durable))
    await server.start_server()
    return server, chats, store, disk


async def _health_answers_meanwhile(http: aiohttp.ClientSession, server: TestServer, events: list[str]) -> None:
    """While a flush is held, the event loop still answers (and had every chance to send a premature ack)."""
    async with http.get(server.make_url("/health")) as r:
        assert r.status == 200
    events.append("health answered")


async def _until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(DEADLINE / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_websocket_ack_and_the_echo_wait_for_the_flush(tmp_path: Path):
    events: list[str] = []
    server, chats, store, disk = await _public(tmp_path, events)
    chat, token = chats.open(None, None, None)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
            await ws.send_json({"type": "auth", "token": token, "since": 0})
            assert (await ws.receive_json(timeout=DEADLINE))["type"] == "ready"
            assert (await ws.receive_json(timeout=DEADLINE))["type"] == "message"      # the queue notice
            frames: list[dict] = []

            async def read() -> None:
                async for msg in ws:
                    frame = msg.json()
                    frames.append(frame)
                    events.append(f"{frame['type']} {frame.get('client_id')}")
            reader = asyncio.create_task(read())
            disk.hold()
            events.clear()
            await ws.send_json({"type": "message", "client_id": "m1", "body": "words-to-keep"})
            assert b"words-to-keep" in await disk.next_flush()
            await _health_answers_meanwhile(http, server, events)
            disk.release()
            await _until(lambda: any(f["type"] == "ack" for f in frames), "the ack")
            await _until(lambda: "message m1" in events, "the echo")
            assert events.index("flush done") < events.index("ack m1")
            assert events.index("flush done") < events.index("message m1")
            assert events[:3] == ["flush started", "health answered", "released"]
            await ws.close()
            await reader
    finally:
        disk.let_go()
        await server.close()
        store.close()


async def test_a_burst_on_one_socket_is_stored_while_the_disk_works_and_acked_in_order(tmp_path: Path):
    events: list[str] = []
    server, chats, store, disk = await _public(tmp_path, events)
    chat, token = chats.open(None, None, None)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
            await ws.send_json({"type": "auth", "token": token, "since": 0})
            assert (await ws.receive_json(timeout=DEADLINE))["type"] == "ready"
            assert (await ws.receive_json(timeout=DEADLINE))["type"] == "message"      # the queue notice
            flushes_before = store.db.flushes
            acks: list[str] = []

            async def read() -> None:
                async for msg in ws:
                    frame = msg.json()
                    if frame["type"] == "ack":
                        acks.append(frame["client_id"])
            reader = asyncio.create_task(read())
            disk.hold()
            sent = [f"m{i}" for i in range(10)]
            for client_id in sent:
                await ws.send_json({"type": "message", "client_id": client_id, "body": f"burst {client_id}"})
            await disk.next_flush()                 # the first ack's flush, held …
            # … while the socket's next frames are read and stored, not waiting for it
            await _until(lambda: store.messages.count_from(chat.id, "visitor") == 10, "the burst stored")
            assert acks == []
            disk.let_go()
            await _until(lambda: len(acks) == 10, "every ack")
            assert acks == sent                     # in the order sent
            assert store.db.flushes - flushes_before <= 3       # shared flushes, not one per message
            await ws.close()
            await reader
    finally:
        disk.let_go()
        await server.close()
        store.close()


async def test_http_answers_wait_for_the_flush(tmp_path: Path):
    events: list[str] = []
    server, chats, store, disk = await _public(tmp_path, events)
    try:
        async with aiohttp.ClientSession() as http:
            async def leave_message() -> int:
                async with http.post(server.make_url("/api/v1/offline_messages"),
                                     json={"topic": "general", "message": "please call back"}) as r:
                    events.append(f"answered {r.status}")
                    return r.status
            disk.hold()
            posting = asyncio.create_task(leave_message())
            assert b"please call back" in await disk.next_flush()
            await _health_answers_meanwhile(http, server, events)
            disk.release()
            assert await asyncio.wait_for(posting, DEADLINE) == 201
            assert events == ["flush started", "health answered", "released", "flush done", "answered 201"]
    finally:
        disk.let_go()
        await server.close()
        store.close()


async def test_the_appservice_200_waits_for_the_flush(tmp_path: Path):
    events: list[str] = []
    store, disk = open_store(tmp_path, events)
    endpoint = AppserviceEndpoint("hs-token", store.transactions, lambda: None, lambda user: False,
                                  store.db.durable)
    server = TestServer(endpoint.app())
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async def put(txn: str) -> int:
                async with http.put(server.make_url(f"/_matrix/app/v1/transactions/{txn}"),
                                    json={"events": [{"type": "m.room.message", "event_id": f"$e{txn}",
                                                      "room_id": "!r:hs", "content": {"body": "kept-event"}}]},
                                    headers={"Authorization": "Bearer hs-token"}) as r:
                    events.append(f"answered {r.status}")
                    return r.status
            disk.hold()
            putting = asyncio.create_task(put("1"))
            assert b"kept-event" in await disk.next_flush()
            events.append("still waiting")
            disk.release()
            assert await asyncio.wait_for(putting, DEADLINE) == 200
            assert events == ["flush started", "still waiting", "released", "flush done", "answered 200"]
    finally:
        disk.let_go()
        await server.close()
        store.close()


async def test_requests_to_the_homeserver_wait_for_the_flush(tmp_path: Path):
    events: list[str] = []
    store, disk = open_store(tmp_path, events)

    async def versions(request: web.Request) -> web.Response:
        events.append("homeserver asked")
        return web.json_response({"versions": ["v1.11"]})
    app = web.Application()
    app.router.add_get("/_matrix/client/versions", versions)
    homeserver = TestServer(app)
    await homeserver.start_server()
    api = HomeserverApi(str(homeserver.make_url("")), "as-token", "precinct", durable=store.db.durable)
    await api.start()
    try:
        disk.hold()
        add_chat(store, "A")                        # e.g. the outbox row whose txn ID the send will carry
        asking = asyncio.create_task(api.request("GET", "/_matrix/client/versions"))
        await disk.next_flush()
        events.append("still waiting")
        disk.release()
        await asyncio.wait_for(asking, DEADLINE)
        assert events == ["flush started", "still waiting", "released", "flush done", "homeserver asked"]
    finally:
        disk.let_go()
        await api.close()
        await homeserver.close()
        store.close()


async def test_when_the_disk_fails_nothing_is_acknowledged_and_health_says_so(tmp_path: Path):
    events: list[str] = []
    server, chats, store, disk = await _public(tmp_path, events)
    chat, token = chats.open(None, None, None)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.make_url(f"/api/v1/chats/{chat.id}/ws"))
            await ws.send_json({"type": "auth", "token": token, "since": 0})
            assert (await ws.receive_json(timeout=DEADLINE))["type"] == "ready"
            assert (await ws.receive_json(timeout=DEADLINE))["type"] == "message"
            disk.failure = OSError(errno.EIO, "Input/output error")
            await ws.send_json({"type": "message", "client_id": "m1", "body": "not promised"})
            answer = await ws.receive_json(timeout=DEADLINE)
            assert answer["type"] == "error" and answer["error"] == "store_unavailable", answer
            async with http.post(server.make_url("/api/v1/offline_messages"),
                                 json={"topic": "general", "message": "hello"}) as r:
                assert r.status == 503 and (await r.json())["error"] == "store_unavailable"
            async with http.get(server.make_url("/health")) as r:
                assert r.status == 503 and (await r.json())["status"] == "store_failed"
            await ws.close()
    finally:
        await server.close()
        store.close()
