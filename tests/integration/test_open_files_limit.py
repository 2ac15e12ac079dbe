"""Issue 11: the real bridge under a low open-files limit (tests/support/lowfd.py: soft = hard = 192, so it
cannot raise it) with the session's real Synapse and an encrypted nio officer.

Citizens open chats and keep their WebSockets until the bridge runs short: new chats get 503 "busy" with the
phone number (never a 500), a chat already open goes on both ways, then a flood of bare connections is
answered "busy" and closed while that chat still works, the log says so a bounded number of times, and once
the chats close new ones open again. Every loop is bounded; every connection is closed by the test.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid

import aiohttp

from tests.conftest import PASSWORD
from tests.support import lowfd
from tests.support.bridge_db import dispatch_room_of, room_of
from tests.support.officer import OfficerPool
from tests.support.visitor import Visitor
from tests.support.waiting import until


async def _both_ways(visitor: Visitor, officer, room_id: str | None, what: str) -> str:
    """A citizen message reaches the officer and an officer reply reaches the citizen; the chat's room."""
    said = f"{what} from the citizen {uuid.uuid4().hex[:6]}"
    await visitor.send(said)
    room_id = (await officer.wait_message(lambda m: m.body == said, 90)).room_id
    reply = f"{what} from the officer {uuid.uuid4().hex[:6]}"
    await officer.send(room_id, reply)
    await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == reply, 60,
                             f"officer reply {reply!r}")
    return room_id


def _shortage_lines(env: lowfd.LowFdEnv) -> list[str]:
    return [line for line in env.bridge.log_path.read_text(errors="replace").splitlines()
            if "resources short" in line or "out of system resource" in line]


async def test_at_the_open_files_limit_new_chats_are_busy_and_open_chats_go_on(lowfd_env: lowfd.LowFdEnv,
                                                                               tmp_path):
    env = lowfd_env
    pool = OfficerPool(tmp_path, PASSWORD)
    first = Visitor(env.public_url)
    crowd: list[Visitor] = []
    raw: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        assert "open-files limit: 192" in env.bridge.log_path.read_text()
        # No officer claims the crowd's chats: they stay rows in the store, as silent chats do.
        officer = await pool.start(env.config["homeserver"]["url"], env.officer_id, "lowfd", auto_claim=False)
        created = await first.create(topic="general", consent=True)
        await first.connect()
        dispatch = await dispatch_room_of(env.dir / "precinct.db", "lowdesk")
        for attempt in range(3):
            await officer.claim(dispatch, created["number"])
            try:
                await first.wait_frame(lambda f: f.get("code") == "officer_joined", 20, "the officer joining")
                break
            except AssertionError:
                # The bot sometimes never gets the officer's room key for the dispatch room (the homeserver's
                # to-device push race, bench/README.md; not what this test is about): claim again with a new key.
                if attempt == 2:
                    raise
                officer.client.olm.outbound_group_sessions.pop(dispatch, None)
        room_id = await _both_ways(first, officer, None, "before the crowd")

        # Citizens open chats and keep their pages open until the bridge keeps its last descriptors.
        statuses: dict[int, int] = {}
        busy = None
        for _ in range(lowfd.OPEN_FILES):                    # each open chat holds at least one descriptor
            v = Visitor(env.public_url)
            crowd.append(v)
            async with v.session.post(env.public_url + "/api/v1/chats", json={"topic": "general"}) as r:
                body = await r.json(content_type=None)
                statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status != 201:
                busy = (r.status, body, r.headers.get("Retry-After"))
                break
            v.chat_id, v.token, v.ws_url = body["chat_id"], body["token"], body["ws_url"]
            await v.connect()
        assert busy is not None, f"never refused: {statuses}"
        status, body, retry_after = busy
        assert status == 503 and body["error"] == "busy", busy
        assert body["phone_number"] == lowfd.PHONE and body["emergency_number"] == "999" and retry_after == "60"
        assert set(statuses) == {201, 503}, statuses
        assert statuses[201] >= 20, statuses               # the reserve is for open chats, not the whole limit

        # The chat already open goes on, both ways, with everyone else's page still open.
        await _both_ways(first, officer, room_id, "in the crowd")

        # Bare connections pile up: past half the reserve they are answered busy and closed at once.
        refused = None
        for _ in range(lowfd.OPEN_FILES):
            reader, writer = await asyncio.open_connection("127.0.0.1", int(env.public_url.rsplit(":", 1)[1]))
            raw.append((reader, writer))
            try:
                head = await asyncio.wait_for(reader.read(200), 0.15)
            except asyncio.TimeoutError:
                continue                                      # accepted for a request that never comes
            if head:
                refused = head + await asyncio.wait_for(reader.read(), 10)     # to the end: the bridge shuts its side
                break
        assert refused is not None and refused.startswith(b"HTTP/1.1 503"), refused
        assert b"Retry-After: 60" in refused and b'"error": "busy"' in refused and b'"phone_number": "101"' in refused
        print(f"chats opened before busy: {statuses[201]}; bare connections before refused: {len(raw)}; "
              f"bridge descriptors open: {env.bridge.open_fds()} of {lowfd.OPEN_FILES}")
        await _both_ways(first, officer, room_id, "in the connection flood")

        # A bounded number of lines about it, each a clear one; never asyncio's line per connection.
        lines = _shortage_lines(env)
        assert 1 <= len(lines) <= 6, lines
        assert not [line for line in lines if "out of system resource" in line and "resources short" not in line]
        text = env.bridge.log_path.read_text(errors="replace")
        assert "internal_error" not in text and "unexpected error" not in text

        # Pages close and the chats end: new chats open again.
        for _, writer in raw:
            writer.close()
        raw.clear()
        for v in crowd:
            if v.chat_id:
                await v.http("POST", f"/api/v1/chats/{v.chat_id}/close", json={})
            await v.close()
        crowd.clear()
        again = Visitor(env.public_url)
        crowd.append(again)

        async def opens() -> bool:
            async with again.session.post(env.public_url + "/api/v1/chats", json={"topic": "general"}) as r:
                return r.status == 201
        await until(opens, 60, "a new chat once the others closed", interval=1)
        await _both_ways(first, officer, room_id, "after the crowd")
    finally:
        for _, writer in raw:
            writer.close()
        for v in [first, *crowd]:
            await v.close()
        await pool.stop_all()



def _metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def _levels(env: lowfd.LowFdEnv, http) -> tuple[int, int, int]:
    """(live puppet clients, crypto store files open, descriptors open) of the bridge now."""
    async with http.get(env.metrics_url) as r:
        live = int(_metric(await r.text(), "precinct_live_puppet_clients"))
    pid = env.bridge.proc.pid
    crypto_dir = str(env.dir / "crypto")
    stores = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            stores += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(crypto_dir)
        except OSError:
            pass                                           # closed meanwhile
    return live, stores, env.bridge.open_fds()


ROUNDS, CHATS_PER_ROUND = 3, 6


async def test_chats_opened_and_closed_in_rounds_leave_nothing_loaded(lowfd_env: lowfd.LowFdEnv):
    """Each chat speaks (so it gets its puppet, device, keys and room), then closes; after each round the
    bridge's loaded puppet clients and open crypto store files are back where they started, and its
    descriptors within the homeserver pool's bound of it: nothing is kept per chat served."""
    env = lowfd_env
    pool_bound = env.config["homeserver"]["max_connections"]
    async with aiohttp.ClientSession() as http:
        start = await until(lambda: _settled(env, http, None), 60,
                            "the bridge idle before the rounds: the bot alone loaded, its store closed", interval=0.5)
        live0, stores0, fds0 = start
        assert live0 == 1 and stores0 == 0, start           # the bot only, its store closed between uses
        for round_no in range(ROUNDS):
            visitors = [Visitor(env.public_url, f"127.0.0.{20 + i}") for i in range(CHATS_PER_ROUND)]
            try:
                for v in visitors:
                    await v.create(topic="general")
                    await v.connect()
                    await v.send(f"round {round_no}: hello")
                for v in visitors:
                    await room_of(env.dir / "precinct.db", v.chat_id, 90)
                peak = await _levels(env, http)
                assert peak[0] > live0, peak                # the chats' puppets were loaded while they spoke
                for v in visitors:
                    await v.http("POST", f"/api/v1/chats/{v.chat_id}/close", json={})
            finally:
                for v in visitors:
                    await v.close()
            after = await until(lambda: _settled(env, http, (live0, stores0, fds0 + pool_bound)), 90,
                                f"round {round_no}: the bridge back to its starting level", interval=0.5)
            print(f"round {round_no}: peak live clients {peak[0]}, descriptors {peak[2]}; after close {after} "
                  f"(start {start})")


async def _settled(env: lowfd.LowFdEnv, http, ceiling: tuple[int, int, int] | None):
    """The levels when no chat is being set up or sent for and they are at or under ``ceiling``."""
    levels = await _levels(env, http)
    pending = _pending(env)
    if pending:
        return None
    if ceiling is None:
        # Idle: the bot alone loaded and its store closed between uses (it may be mid-use for a moment at
        # start-up — dispatch notices, key upkeep — so this is waited for, not caught at one instant).
        return levels if levels[0] == 1 and levels[1] == 0 else None
    return levels if all(now <= most for now, most in zip(levels, ceiling)) else None


def _pending(env: lowfd.LowFdEnv) -> int:
    """Outbox items not sent yet (the close notices go to the rooms after the close)."""
    conn = sqlite3.connect(f"file:{env.dir / 'precinct.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
    finally:
        conn.close()
