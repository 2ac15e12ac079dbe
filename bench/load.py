"""Load: many citizens at once, in rounds, through the real bridge and a real Synapse (issue 11).

    .venv/bin/python bench/load.py [--citizens 200] [--in-flight 20] [--rounds 3] [--messages 2]
                                   [--addresses 50] [--open-files N] [--keep]
                                   [--connected N --active A --cycles C [--restart kill|term]]
                                   [--homeserver single|postgres|workers|both]

Run from the repository root. It starts its own Synapse and the real bridge on free loopback ports in a
temporary directory (the integration tests' set-up, bench/latency.py's ``start_stack``), with admission
limits and the queue cap raised (this is legitimate load, not abuse: bench/abuse.py measures those). Each
round, --citizens citizens from --addresses loopback addresses (127.0.0.10 …) each open a chat
(POST /api/v1/chats), connect its WebSocket, send --messages messages (waiting for each ack) and close it,
with at most --in-flight citizens at a time. Chats that said something get a puppet and a room (the
Matrix side catches up after the citizens are done); the round ends when every chat's outbox is sent
(bounded), and "after close" is read once the bridge's memory and descriptors stop changing and its loaded
puppet clients are back where the round began (crypto.idle_unload_seconds: --idle-unload, 30 s by
default against the product's 120 s, so "after close" comes sooner; bounded). The last line of the output
is the figures as JSON (``RESULT {…}``), for the reduced run in tests/integration/test_bench_guards.py.

--connected N [--active A] [--cycles C] runs, instead of rounds, cycles of N citizens connected at once (each
opens its chat and keeps its WebSocket), A of them writing and talking with an officer (a real encrypted nio
client that claims those chats, and only those, from the dispatch room; --messages each way), the others
waiting silent in the queue; once every conversation is done all N close, and "after" is read as above. The
issue-11 figure: ``--connected 1000 --active 200 --cycles 5``. With --restart kill|term, each cycle, once the
conversations are done, the bridge is SIGKILLed (a crash) or stopped (an upgrade) under every connected citizen,
the officer writes once to each conversation while it is down, and the bridge is started again: every citizen
comes back as the page does (its socket closes; it tries again after 1 s, doubling to 30 s, ±20 %, from its last
seq), and the report says how long until all were back, which attempts failed and why (a refused connection while
the bridge is down; anything else is the bridge's), whether each message written meanwhile reached its citizen
once, and whether each citizen's next line reached the officer.

--homeserver workers runs it against Synapse on PostgreSQL with workers (bridge/devtools/workers.py) instead
of one Synapse process on SQLite, and postgres against one Synapse process on PostgreSQL; both runs the same
thing against single and workers, one after the other (each with a bridge of its own), and ends with the two side
by side. The homeserver's CPU is then all of its processes'.

--open-files N starts the bridge with RLIMIT_NOFILE N (soft and hard), e.g. 1024, systemd's default soft
limit, to see what happens there. Every process it starts is stopped by PID in a ``finally``; every loop
is bounded; nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import nio  # noqa: E402
import yaml  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_latency", ROOT / "bench" / "latency.py")
latency = importlib.util.module_from_spec(_spec)
assert _spec.loader is not None
sys.modules["bench_latency"] = latency
_spec.loader.exec_module(latency)
pct, cpu_seconds, rss_kb, log = latency.pct, latency.cpu_seconds, latency.rss_kb, latency.log

from tests.conftest import OFFICERS, PASSWORD, SERVER  # noqa: E402
from tests.support.bridge_db import room_of  # noqa: E402
from tests.support.officer import NioOfficer  # noqa: E402
from tests.support.visitor import Visitor  # noqa: E402
import topologies  # noqa: E402   (bench/, the script's own folder)

TOPIC = "general"
CITIZEN_TIMEOUT = 60.0         # one citizen's whole visit (POST, socket, messages, close) at most
SETTLE_TIMEOUT = 600.0         # the Matrix side catching up after a round, at most
QUIET_TIMEOUT = 120.0          # memory and descriptors settling after that, at most
RESTART_TIMEOUT = 300.0        # --restart: every citizen back, from the stop, at most
SEND_FAILED = re.compile(r"send \S+ failed")
LOOSE = {"burst": 1_000_000, "per_hour": 36_000_000}


def open_fds(pid: int | None) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd")) if pid else None
    except OSError:
        return None


def crypto_files(pid: int | None, crypto_dir: Path) -> int | None:
    if not pid:
        return None
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(crypto_dir))
            except OSError:
                pass
    except OSError:
        return None
    return n


# ``python -c PROFILED FILE run -c CONFIG``: the bridge under cProfile, timed by CPU (process_time), not by the
# wall clock: waits on the disk or the network are not costs. The stats are written when the bridge stops.
PROFILED = """
import cProfile, runpy, sys, time
out, sys.argv = sys.argv[1], ["bridge", *sys.argv[2:]]
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_module, "bridge", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profile.dump_stats(out)
"""


async def leave_closed(officer: NioOfficer, room_ids: list[str]) -> None:
    """The officer leaves and forgets the rooms of closed chats, as officers do in Element once a chat is over;
    otherwise the test officer's own client, not the bridge, slows down cycle after cycle (it was in 400 rooms
    by the second cycle of 200 conversations, and timed out)."""
    gate = asyncio.Semaphore(5)

    async def leave(room_id: str) -> None:
        async with gate:
            await officer.client.room_leave(room_id)
            await officer.client.room_forget(room_id)
            officer.joined.discard(room_id)
    await asyncio.gather(*(leave(r) for r in room_ids))
    officer.messages.clear()


class Bridge:
    """The bridge process (own launcher: --open-files applies to it alone), stopped by PID."""

    def __init__(self, config_path: Path, public_url: str, log_path: Path, open_files: int | None,
                 profile: Path | None = None) -> None:
        """``profile``: run the bridge under cProfile, its stats written to this file when it stops."""
        self.config_path, self.public_url, self.log_path, self.open_files = config_path, public_url, log_path, open_files
        self.profile = profile
        self.proc: subprocess.Popen | None = None

    def _limit(self) -> None:
        if self.open_files:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def start(self, timeout: float = 60) -> None:
        with open(self.log_path, "ab") as out:
            command = ["-c", PROFILED, str(self.profile)] if self.profile else ["-m", "bridge"]
            self.proc = subprocess.Popen([sys.executable, *command, "run", "-c", str(self.config_path)],
                                         stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=self._limit)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.public_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"bridge not ready after {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: nothing is closed, no page is told."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@dataclass
class Round:
    number: int
    opened: int = 0
    failed: dict[str, int] = field(default_factory=dict)       # why: "503 busy", "500 internal_error", "timeout"…
    post_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    acks_missing: int = 0
    rss: list[int | None] = field(default_factory=lambda: [None, None, None])     # start, peak, after close (kB)
    fds: list[int | None] = field(default_factory=lambda: [None, None, None])
    crypto_files: list[int | None] = field(default_factory=lambda: [None, None, None])
    live_clients: list[int | None] = field(default_factory=lambda: [None, None, None])
    cpu: dict[str, float] = field(default_factory=dict)          # CPU seconds in the round: bridge, homeserver
    citizens_s: float = 0.0                                      # first POST → last citizen done
    rooms: int = 0
    setup_s: float | None = None                                  # first POST → last room ready (store stamps)
    settled: bool = True
    conversations: int = 0                                       # --connected: active chats that went both ways
    restart: dict[str, Any] = field(default_factory=dict)        # --restart: what the citizens saw of it


class Load:
    def __init__(self, args: Any, dir: Path, bridge: Bridge, synapse: Any, metrics_url: str | None) -> None:
        self.args, self.dir, self.bridge, self.synapse, self.metrics_url = args, dir, bridge, synapse, metrics_url
        self.db = dir / "precinct.db"
        self.carried_cpu = 0.0                 # CPU seconds of bridge processes a --restart stopped, this cycle

    # -- readings --
    async def live_clients(self, http: aiohttp.ClientSession) -> int | None:
        if not self.metrics_url:
            return None
        try:
            async with http.get(self.metrics_url, timeout=aiohttp.ClientTimeout(total=10)) as r:
                for line in (await r.text()).splitlines():
                    if line.startswith("precinct_live_puppet_clients "):
                        return int(float(line.split()[-1]))
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        return None

    def sample(self) -> tuple[int | None, int | None, int | None]:
        pid = self.bridge.pid
        return rss_kb(pid), open_fds(pid), crypto_files(pid, self.dir / "crypto")

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    # -- one citizen --
    async def citizen(self, r: Round, session: aiohttp.ClientSession, i: int) -> None:
        url = self.bridge.public_url
        t0 = time.monotonic()
        try:
            async with session.post(url + "/api/v1/chats", json={"topic": TOPIC, "consent": True}) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
            if status != 201:
                why = f"{status} {body.get('error') if isinstance(body, dict) else body}"
                r.failed[why] = r.failed.get(why, 0) + 1
                return
            r.post_ms.append((time.monotonic() - t0) * 1000)
            r.opened += 1
            async with session.ws_connect(body["ws_url"], timeout=aiohttp.ClientWSTimeout(ws_close=10)) as ws:
                await ws.send_json({"type": "auth", "token": body["token"], "since": 0})
                ready = await ws.receive_json(timeout=20)
                if ready.get("type") != "ready":
                    r.failed["ws not ready"] = r.failed.get("ws not ready", 0) + 1
                    return
                for m in range(self.args.messages):
                    client_id = uuid.uuid4().hex
                    sent = time.monotonic()
                    await ws.send_json({"type": "message", "client_id": client_id, "body": f"citizen {i} says {m}"})
                    while True:
                        frame = await ws.receive_json(timeout=30)
                        if frame.get("type") == "ack" and frame.get("client_id") == client_id:
                            r.ack_ms.append((time.monotonic() - sent) * 1000)
                            break
                        if frame.get("type") == "error" and frame.get("client_id") == client_id:
                            r.acks_missing += 1
                            break
                await ws.send_json({"type": "close"})
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:        # until the page hears the chat ended
                    frame = await ws.receive_json(timeout=20)
                    if frame.get("type") == "status" and frame.get("state") == "closed":
                        break
        except (aiohttp.ClientError, asyncio.TimeoutError, TypeError, ValueError, KeyError) as e:
            why = type(e).__name__
            r.failed[why] = r.failed.get(why, 0) + 1

    # -- one round --
    async def round(self, number: int) -> Round:
        r = Round(number)
        args = self.args
        sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{10 + a}", 0)),
                                          timeout=aiohttp.ClientTimeout(total=CITIZEN_TIMEOUT))
                    for a in range(args.addresses)]
        async with aiohttp.ClientSession() as http:
            try:
                async with self.watching(r, http):
                    first_ms = int(time.time() * 1000)
                    started = time.monotonic()
                    gate = asyncio.Semaphore(args.in_flight)

                    async def one(i: int) -> None:
                        async with gate:
                            await self.citizen(r, sessions[i % len(sessions)], i)
                    await asyncio.gather(*(one(i) for i in range(args.citizens)))
                    r.citizens_s = time.monotonic() - started
                    log(f"round {number}: {r.opened} opened, {sum(r.failed.values())} failed in {r.citizens_s:.0f} s; "
                        "waiting for the Matrix side")
                    r.settled = await self.settle()
                rows = self.query("SELECT COUNT(*), MAX(ready_ts) FROM chats WHERE created_ts >= ? AND room_id IS NOT "
                                  "NULL", (first_ms,))
                r.rooms = rows[0][0]
                if rows[0][1]:
                    r.setup_s = (rows[0][1] - first_ms) / 1000
                await self.quiet(r, http)
            finally:
                for s in sessions:
                    await s.close()
        return r

    # -- --connected: many citizens at once, some of them in conversation with an officer --
    async def cycle(self, number: int, officer: NioOfficer) -> Round:
        """--connected citizens open a chat and stay connected, all at once; every (connected ÷ active)-th of
        them writes, the officer claims those (only those: the others wait in the queue, silent), and they
        talk, --messages each way; once every conversation is done, all of them close."""
        r = Round(number)
        args = self.args
        every = max(1, args.connected // max(args.active, 1))
        active = {i for i in range(0, args.connected, every)} if args.active else set()
        active = set(sorted(active)[:args.active])
        numbers: dict[int, int] = {}             # chat number → citizen index, for the officer's claims
        talked: list[str] = []                   # the rooms of this cycle's conversations
        rooms: dict[int, str] = {}               # citizen index → its conversation's room
        officer.auto_claim = lambda n: numbers.get(n, -1) in active
        citizens = [Visitor(self.bridge.public_url, source=f"127.0.0.{10 + i % args.addresses}")
                    for i in range(args.connected)]
        gate = asyncio.Semaphore(args.in_flight)

        def fail(why: str) -> None:
            r.failed[why] = r.failed.get(why, 0) + 1

        async def open_one(i: int) -> None:
            v = citizens[i]
            async with gate:
                t0 = time.monotonic()
                try:
                    data = await v.create(topic=TOPIC, consent=True, display_name=f"Load {number}-{i}")
                    numbers[data["number"]] = i
                    r.post_ms.append((time.monotonic() - t0) * 1000)
                    r.opened += 1
                    await v.connect()
                    if i in active:
                        sent = time.monotonic()
                        await v.send(f"citizen {number}.{i} opens", client_id=uuid.uuid4().hex)
                        r.ack_ms.append((time.monotonic() - sent) * 1000)
                except AssertionError as e:
                    fail(str(e).split(",")[0][:60] or "refused")
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    fail(type(e).__name__)

        async def talk(i: int) -> None:
            v = citizens[i]
            step = "start"
            async with gate:
                try:
                    step = "officer joined (status active)"
                    await v.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active",
                                       CITIZEN_TIMEOUT * 3, step)
                    room_id = await room_of(self.db, v.chat_id, CITIZEN_TIMEOUT)
                    talked.append(room_id)
                    rooms[i] = room_id
                    await officer.wait_joined(room_id, CITIZEN_TIMEOUT)
                    for k in range(args.messages):
                        down = f"officer {number}.{i}.{k}"
                        step = "officer's message at the citizen"
                        await officer.send(room_id, down)
                        await v.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == down,
                                           CITIZEN_TIMEOUT, down)
                        up = f"citizen {number}.{i}.{k}"
                        step = "citizen's message at the officer"
                        sent = time.monotonic()
                        await v.send(up, client_id=uuid.uuid4().hex)
                        r.ack_ms.append((time.monotonic() - sent) * 1000)
                        await officer.wait_message(lambda m: m.body == up, CITIZEN_TIMEOUT, up)
                    r.conversations += 1
                except (AssertionError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                    fail(f"conversation, {step}: {type(e).__name__}")

        async def close_one(v: Visitor) -> None:
            async with gate:
                try:
                    if v.chat_id:
                        await v.http("POST", f"/api/v1/chats/{v.chat_id}/close")
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    fail(f"close: {type(e).__name__}")
                finally:
                    await v.close()

        async with aiohttp.ClientSession() as http:
            async with self.watching(r, http):
                first_ms = int(time.time() * 1000)
                started = time.monotonic()
                try:
                    await asyncio.gather(*(open_one(i) for i in range(args.connected)))
                    log(f"cycle {number}: {r.opened} connected ({sum(r.failed.values())} failed) in "
                        f"{time.monotonic() - started:.0f} s; {len(active)} in conversation")
                    await asyncio.gather(*(talk(i) for i in sorted(active) if citizens[i].ws is not None))
                    if args.restart:
                        await self.restart(number, citizens, rooms, officer, r)
                    r.settled = await self.settle()
                    log(f"cycle {number}: {r.conversations} conversations done at {time.monotonic() - started:.0f} s;"
                        f" RSS {mb(rss_kb(self.bridge.pid))} MB, {open_fds(self.bridge.pid)} fds; closing all")
                finally:
                    await asyncio.gather(*(close_one(v) for v in citizens))
                r.citizens_s = time.monotonic() - started
                await self.settle()
                await leave_closed(officer, talked)
            rows = self.query("SELECT COUNT(*), MAX(ready_ts) FROM chats WHERE created_ts >= ? AND room_id IS NOT "
                              "NULL", (first_ms,))
            r.rooms = rows[0][0]
            if rows[0][1]:
                r.setup_s = (rows[0][1] - first_ms) / 1000
            await self.quiet(r, http)
        return r

    async def restart(self, number: int, citizens: list[Visitor], rooms: dict[int, str], officer: NioOfficer,
                      r: Round) -> None:
        """--restart: the bridge stopped under every connected citizen (SIGKILL: a crash; SIGTERM: an upgrade), the
        officer writing to each conversation while it is down, then started again. Every citizen comes back as the
        page does (static/js/connection.js: its socket closes, it tries again after 1 s, doubling to 30 s, ±20 %;
        every second for a minute if the bridge closed it with 1001 "server restarting"; asking from the last seq
        it has). Counted from the clients: how long until all were back, the attempts
        that failed and why, each of the officer's messages at its citizen once, and one more line from each
        citizen at the officer."""
        args = self.args
        connected = [v for v in citizens if v.ws is not None]
        old_pid = self.bridge.pid
        self.carried_cpu += cpu_seconds(old_pid)
        stopped = time.monotonic()
        if args.restart == "kill":
            self.bridge.kill()
        else:
            await asyncio.to_thread(self.bridge.stop)
        log(f"cycle {number}: bridge {'killed' if args.restart == 'kill' else 'stopped'} under {len(connected)} "
            f"connected citizens; the officer writes to {len(rooms)} conversations meanwhile")
        up: list[float] = []
        back_ms: list[float] = []
        failures: dict[str, int] = {}
        attempts = 0

        async def come_back(v: Visitor) -> None:
            nonlocal attempts
            code = await v.wait_closed(60)                          # the page sees its socket close
            closed = time.monotonic()
            restarting_until = closed + 60 if code == 1001 else closed
            delay, deadline = 1.0, stopped + RESTART_TIMEOUT
            while time.monotonic() < deadline:
                if time.monotonic() < restarting_until:
                    await asyncio.sleep(random.uniform(0.8, 1.2))
                else:
                    await asyncio.sleep(min(delay, 30.0) * random.uniform(0.8, 1.2))
                    delay *= 2
                attempts += 1
                try:
                    await asyncio.wait_for(v.connect(), 30)
                except (AssertionError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                    status = getattr(e, "status", None)
                    why = f"{status} at the upgrade" if status else type(e).__name__
                    failures[why] = failures.get(why, 0) + 1        # ClientConnectorError: still down
                    continue
                back_ms.append((time.monotonic() - stopped) * 1000)
                return

        returning = [asyncio.create_task(come_back(v)) for v in connected]     # the pages try from now on
        down = {i: f"officer {number}.{i} while the bridge was down" for i in rooms}
        gate = asyncio.Semaphore(10)

        async def write(i: int) -> None:
            async with gate:
                await officer.send(rooms[i], down[i])
        await asyncio.gather(*(write(i) for i in rooms))
        await asyncio.to_thread(self.bridge.start, 120)
        up.append(time.monotonic())
        log(f"cycle {number}: bridge ready again (/health ok) {up[0] - stopped:.1f} s after the stop")
        await asyncio.gather(*returning)
        delivered = doubled = after = 0
        delivered_ms: list[float] = []                  # from the stop to the officer's line at its citizen

        async def resume(i: int) -> None:
            nonlocal delivered, doubled, after
            v = citizens[i]
            if v.ws is None:
                return
            async with gate:
                try:
                    await v.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == down[i],
                                       CITIZEN_TIMEOUT, down[i])
                    delivered += 1
                    first = next(n for n, f in enumerate(v.frames) if f.get("body") == down[i])
                    delivered_ms.append((v.arrived[first] - stopped) * 1000)
                    doubled += len({f["seq"] for f in v.frames if f.get("body") == down[i]}) > 1
                    line = f"citizen {number}.{i} after the restart"
                    await v.send(line, client_id=uuid.uuid4().hex)
                    await officer.wait_message(lambda m: m.body == line, CITIZEN_TIMEOUT, line)
                    after += 1
                except (AssertionError, aiohttp.ClientError, asyncio.TimeoutError):
                    pass
        await asyncio.gather(*(resume(i) for i in rooms))
        r.restart = {"how": args.restart, "connected": len(connected), "back": len(back_ms),
                     "ready_s": round(up[0] - stopped, 1), "all_back_s": round(max(back_ms, default=0) / 1000, 1),
                     "back_p50_ms": round(pct(back_ms, 50)) if back_ms else None,
                     "back_p99_ms": round(pct(back_ms, 99)) if back_ms else None,
                     "attempts": attempts, "failed_attempts": failures, "written_while_down": len(down),
                     "delivered": delivered, "doubled": doubled, "answered_after": after,
                     "delivered_p50_ms": round(pct(delivered_ms, 50)) if delivered_ms else None,
                     "delivered_last_ms": round(max(delivered_ms)) if delivered_ms else None}
        log(f"cycle {number}: {len(back_ms)} of {len(connected)} citizens back, the last {r.restart['all_back_s']} s "
            f"after the stop; {delivered} of {len(down)} messages written while it was down delivered")

    @contextlib.asynccontextmanager
    async def watching(self, r: Round, http: aiohttp.ClientSession) -> AsyncIterator[None]:
        """Start readings, peaks every half second, and the CPU used, around a round or a cycle."""
        rss, fds, files = self.sample()
        r.rss[0], r.fds[0], r.crypto_files[0] = rss, fds, files
        r.live_clients[0] = await self.live_clients(http)
        cpu0 = {"bridge": cpu_seconds(self.bridge.pid), "homeserver": self.homeserver_cpu()}
        peak = {"rss": rss or 0, "fds": fds or 0, "files": files or 0, "live": r.live_clients[0] or 0}
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                rss, fds, files = self.sample()
                peak["rss"], peak["fds"] = max(peak["rss"], rss or 0), max(peak["fds"], fds or 0)
                peak["files"] = max(peak["files"], files or 0)
                peak["live"] = max(peak["live"], await self.live_clients(http) or 0)
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            stop.set()
            await watcher
            r.rss[1], r.fds[1], r.crypto_files[1], r.live_clients[1] = (peak["rss"], peak["fds"], peak["files"],
                                                                         peak["live"])
            # A restart (--restart) carries the CPU of the process it stopped, read just before.
            r.cpu = {"bridge": cpu_seconds(self.bridge.pid) + self.carried_cpu - cpu0["bridge"],
                     "homeserver": self.homeserver_cpu() - cpu0["homeserver"]}
            self.carried_cpu = 0.0

    def homeserver_cpu(self) -> float:
        """CPU seconds of every homeserver process (Synapse's, and PostgreSQL's, Redis's, nginx's with workers)."""
        return sum(cpu_seconds(pid) for pids in self.synapse.process_groups().values() for pid in pids)

    async def settle(self) -> bool:
        """Until no outbox item is pending (every chat that spoke has its room and its messages sent)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            if self.bridge.pid is None:
                return False
            if not self.query("SELECT 1 FROM outbox WHERE state = 'pending' LIMIT 1"):
                return True
            await asyncio.sleep(1)
        return False

    async def quiet(self, r: Round, http: aiohttp.ClientSession) -> None:
        """'After close': once memory, descriptors and loaded clients hold still over 10 s (three samples:
        the bridge looks for freed heap to give back every 10 s), and the loaded clients are back to the
        round's start, or IDLE_UNLOAD_SECONDS have passed (bounded)."""
        deadline, last, still = time.monotonic() + QUIET_TIMEOUT, None, 0
        unload_by = time.monotonic() + self.args.idle_unload + 10
        while True:
            rss, fds, files = self.sample()
            live = await self.live_clients(http)
            now = (fds, files, live, (rss or 0) // 2048)       # RSS to the 2 MB
            unloaded = live is None or live <= (r.live_clients[0] or 0) or time.monotonic() > unload_by
            still = still + 1 if now == last else 0
            if (still >= 2 and unloaded) or time.monotonic() > deadline:
                r.rss[2], r.fds[2], r.crypto_files[2], r.live_clients[2] = rss, fds, files, live
                return
            last = now
            await asyncio.sleep(5)


def mb(kb: int | None) -> str:
    return "—" if kb is None else f"{kb / 1024:.0f}"


def n(x: int | None) -> str:
    return "—" if x is None else str(x)


def report(rounds: list[Round], args: Any, log_path: Path, open_files_line: str,
           homeserver: str = "one Synapse process, SQLite") -> None:
    print(f"\nHomeserver: {homeserver}", flush=True)
    if args.connected:
        out = [f"\nLoad: {args.connected} citizens connected at once, {args.active} of them in conversation with an "
               f"officer ({args.messages} messages each way), then all closed; × {args.rounds} cycles, {args.in_flight} "
               f"in flight, from {args.addresses} addresses; bridge open-files limit: {open_files_line}"]
    else:
        out = [f"\nLoad: {args.citizens} citizens a round × {args.rounds} rounds, {args.in_flight} in flight, "
               f"{args.messages} messages each, from {args.addresses} addresses; bridge open-files limit: "
               f"{open_files_line}"]
    out.append(f"{'round':>5} {'opened':>7} {'failed':>7} {'POST p50/p99 ms':>16} {'ack p50/p99 ms':>15} "
               f"{'RSS MB start/peak/after':>24} {'fds start/peak/after':>21} {'crypto files':>13} "
               f"{'live clients':>13} {'CPU ms/chat bridge/HS':>22} {'rooms':>6} {'set-up /s':>9}")
    for r in rounds:
        chats = max(r.opened, 1)
        rate = f"{r.rooms / r.setup_s:.1f}" if r.setup_s else "—"
        out.append(
            f"{r.number:>5} {r.opened:>7} {sum(r.failed.values()):>7} "
            f"{pct(r.post_ms, 50):>7.0f} /{pct(r.post_ms, 99):>6.0f} {pct(r.ack_ms, 50):>6.0f} /{pct(r.ack_ms, 99):>6.0f} "
            f"{'/'.join(mb(x) for x in r.rss):>24} {'/'.join(n(x) for x in r.fds):>21} "
            f"{'/'.join(n(x) for x in r.crypto_files):>13} {'/'.join(n(x) for x in r.live_clients):>13} "
            f"{r.cpu.get('bridge', 0) * 1000 / chats:>10.0f} /{r.cpu.get('homeserver', 0) * 1000 / chats:>9.0f} "
            f"{r.rooms:>6} {rate:>9}" + ("" if r.settled else "  (Matrix side not settled in time)"))
        if r.failed:
            out.append(f"      failures: {', '.join(f'{k}: {v}' for k, v in sorted(r.failed.items()))}")
        if args.connected:
            out.append(f"      conversations done: {r.conversations} of {args.active}; all {r.opened} closed in "
                       f"{r.citizens_s:.0f} s from the first POST")
        if r.restart:
            x = r.restart
            refused = ", ".join(f"{k}: {v}" for k, v in sorted(x["failed_attempts"].items())) or "none"
            out.append(f"      restart ({'SIGKILL' if x['how'] == 'kill' else 'SIGTERM'}), times from the stop: "
                       f"{x['back']} of {x['connected']} citizens back (their page says ready) p50 / p99 "
                       f"{x['back_p50_ms']} / {x['back_p99_ms']} ms, the last at {x['all_back_s']} s; /health ok at "
                       f"{x['ready_s']} s; {x['attempts']} attempts, failed: {refused}; written by the officer while "
                       f"it was down: {x['delivered']} of {x['written_while_down']} at their citizens (p50 "
                       f"{x.get('delivered_p50_ms')} ms, the last at {x.get('delivered_last_ms')} ms from the stop), "
                       f"{x['doubled']} doubled; a line from each citizen after it: {x['answered_after']} at the officer")
        if r.acks_missing:
            out.append(f"      messages refused (error frame instead of ack): {r.acks_missing}")
    out.append("  set-up /s: rooms made ÷ (last room ready − round start), from the bridge store's stamps. CPU: "
               "process CPU seconds in the round ÷ chats opened. 'after' is read once memory and descriptors stop "
               "changing.")
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    lines = text.splitlines()
    send_failed = sum(SEND_FAILED.search(x) is not None for x in lines)
    out.append(f"Bridge log: {len(lines)} lines, {len(text.encode()) / 1024:.0f} kB; "
               f"'out of system resource': {sum('out of system resource' in x for x in lines)}, "
               f"'resources short': {sum('resources short' in x for x in lines)}, "
               f"'setting up chat … failed': {sum('setting up chat' in x and 'failed' in x for x in lines)}, "
               f"'send … failed': {send_failed}, "
               f"500s: {sum('unexpected error' in x for x in lines)}")
    for line in latency.summarise_log(log_path)[:8]:
        out.append("  " + line)
    result = {"rounds": [{"opened": r.opened, "failed": r.failed, "rss_kb": r.rss, "fds": r.fds,
                          "crypto_files": r.crypto_files, "live_clients": r.live_clients, "rooms": r.rooms,
                          "settled": r.settled, "acks": len(r.ack_ms), "acks_missing": r.acks_missing,
                          "conversations": r.conversations, "restart": r.restart}
                         for r in rounds],
              "log": {"lines": len(lines), "out_of_system_resource": sum("out of system resource" in x for x in lines),
                      "resources_short": sum("resources short" in x for x in lines),
                      "unexpected_errors": sum("unexpected error" in x for x in lines)}}
    out.append("RESULT " + json.dumps(result))
    print("\n".join(out), flush=True)


def stack(dir: Path, pool_size: int, open_files: int | None, idle_unload: float,
          profile: Path | None = None, homeserver: str = "single") -> tuple[Any, Bridge, str | None]:
    synapse, tests_bridge, url = latency.start_stack(dir, pool_size, homeserver)
    config = yaml.safe_load(tests_bridge.config_path.read_text())
    from bridge import config as schema
    keys = {k.path for k in schema.SCHEMA}
    config["limits"] = {k.split(".", 1)[1]: LOOSE for k in keys if k.startswith("limits.") and
                        any(k.endswith(s) for s in ("_per_address", "_overall"))}
    config["chats"]["max_waiting_per_agency"] = 0            # the queue cap is for a real night, not this
    config["web"]["max_sockets_per_address"] = 100_000
    config["crypto"].pop("undecryptable_wait_seconds", None)
    if "crypto.idle_unload_seconds" in keys:                  # (older commits keep every client loaded)
        config["crypto"]["idle_unload_seconds"] = idle_unload
    config["logging"] = {"level": "INFO"}
    tests_bridge.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    metrics = f"http://127.0.0.1:{config['metrics']['port']}/metrics" if "metrics" in config else None
    bridge = Bridge(tests_bridge.config_path, url, dir / "bridge.log", open_files, profile)
    return synapse, bridge, metrics


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--citizens", type=int, default=200, help="citizens a round (default 200, max 5000)")
    ap.add_argument("--in-flight", type=int, default=20, help="citizens at a time (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds in one bridge process (default 3, max 10)")
    ap.add_argument("--messages", type=int, default=2, help="messages each citizen sends (default 2)")
    ap.add_argument("--addresses", type=int, default=50, help="loopback addresses citizens come from (max 200)")
    ap.add_argument("--pool-size", type=int, default=3, help="chats.puppet_pool_size (default 3, the product's)")
    ap.add_argument("--open-files", type=int, default=0, help="run the bridge with this RLIMIT_NOFILE (soft=hard)")
    ap.add_argument("--idle-unload", type=float, default=30.0,
                    help="crypto.idle_unload_seconds of the bridge (default 30; the product's is 120)")
    ap.add_argument("--connected", type=int, default=0,
                    help="instead of rounds: this many citizens connected at once, then all closed, per cycle")
    ap.add_argument("--active", type=int, default=0,
                    help="with --connected: how many of them write and talk with an officer (nio, claims them)")
    ap.add_argument("--cycles", type=int, default=0, help="with --connected: cycles (default: --rounds)")
    ap.add_argument("--restart", choices=("kill", "term"),
                    help="with --connected: each cycle, once the conversations are done, the bridge is SIGKILLed "
                         "(kill) or stopped (term) under every connected citizen and started again; the citizens "
                         "come back as the page does")
    ap.add_argument("--profile", type=Path, help="run the bridge under cProfile (CPU time), its stats written here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    ap.add_argument("--homeserver", choices=("single", "postgres", "workers", "both"), default="single",
                    help="one Synapse process on SQLite (default) or on PostgreSQL, Synapse with workers on "
                         "PostgreSQL, or both single and workers")
    args = ap.parse_args()
    if args.cycles:
        args.rounds = args.cycles
    if not (1 <= args.citizens <= 5000 and 1 <= args.in_flight <= 1000 and 1 <= args.rounds <= 10
            and 0 <= args.messages <= 50 and 1 <= args.addresses <= 200 and 0 <= args.connected <= 5000
            and 0 <= args.active <= args.connected and (not args.restart or args.connected)):
        ap.error("out of range: see --help")
    signal.signal(signal.SIGTERM, _terminate)
    logging.getLogger("nio").setLevel(logging.ERROR)      # the officer client's crypto chatter
    return topologies.each(args.homeserver, lambda kind: run_one(kind, args), compare)


def compare(results: dict[str, tuple[str, list[Round]]]) -> None:
    """Each topology's rounds side by side."""
    out = ["", "Homeserver topologies compared (same run, same arguments):",
           f"{'homeserver':<58} {'round':>5} {'opened':>7} {'failed':>7} {'rooms':>6} {'set-up /s':>9} "
           f"{'POST p50 ms':>11} {'ack p50 ms':>10} {'HS CPU ms/chat':>14}"]
    for description, rounds in results.values():
        for r in rounds:
            rate = f"{r.rooms / r.setup_s:.1f}" if r.setup_s else "—"
            out.append(f"{description:<58} {r.number:>5} {r.opened:>7} {sum(r.failed.values()):>7} {r.rooms:>6} "
                       f"{rate:>9} {pct(r.post_ms, 50):>11.0f} {pct(r.ack_ms, 50):>10.0f} "
                       f"{r.cpu.get('homeserver', 0) * 1000 / max(r.opened, 1):>14.0f}")
    print("\n".join(out), flush=True)


def run_one(kind: str, args: Any) -> tuple[int, str, list[Round]]:
    """The whole run against one homeserver topology, its report printed: (status, topology, rounds)."""
    description = kind
    dir = Path(tempfile.mkdtemp(prefix="precinct-load-"))
    synapse = bridge = None
    rounds: list[Round] = []
    try:
        log(f"run directory {dir}")
        synapse, bridge, metrics = stack(dir, args.pool_size, args.open_files or None, args.idle_unload,
                                         args.profile, kind)
        description = synapse.description
        synapse.start()
        if args.connected:
            synapse.register_user(OFFICERS["central"], PASSWORD)
        bridge.start()
        limit = "as inherited"
        found = re.search(r"open-files limit: .*", bridge.log_path.read_text(errors="replace"))
        if found:
            limit = found.group(0)[len("open-files limit: "):]
        elif bridge.pid:
            limit = next((line.split()[3] for line in Path(f"/proc/{bridge.pid}/limits").read_text().splitlines()
                          if line.startswith("Max open files")), "?") + " (soft; the bridge does not raise it)"
        log(f"homeserver ({description}) pid {synapse.pid}; bridge pid {bridge.pid} on {bridge.public_url}; open files {limit}")
        load = Load(args, dir, bridge, synapse, metrics)

        async def run() -> None:
            if not args.connected:
                for i in range(1, args.rounds + 1):
                    rounds.append(await load.round(i))
                    log(f"round {i} done")
                return
            officer = NioOfficer(synapse.url, f"@{OFFICERS['central']}:{SERVER}", PASSWORD, dir / "officer-store")
            await officer.start()
            try:
                for i in range(1, args.rounds + 1):
                    rounds.append(await load.cycle(i, officer))
                    log(f"cycle {i} done")
            finally:
                await asyncio.wait_for(officer.stop(), 30)
        asyncio.run(run())
        report(rounds, args, bridge.log_path, limit, description)
        return 0, description, rounds
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        if rounds and bridge is not None:
            report(rounds, args, bridge.log_path, "?", description)
        return 130, description, rounds
    finally:
        if bridge is not None:
            bridge.stop()
        if synapse is not None:
            synapse.close()
        if args.keep:
            log(f"kept {dir}")
        else:
            shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
