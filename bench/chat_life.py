"""One chat's whole life, and what it costs the bridge and the homeserver in CPU (issue 11).

    .venv/bin/python bench/chat_life.py [--chats 10] [--messages 10] [--profile FILE] [--keep]

Run from the repository root. It starts its own Synapse and the real bridge (bench/load.py's ``stack``: the
tests' set-up, puppet pool 3, admission limits raised) and one officer, a real encrypted matrix-nio client
(tests/support/officer.py) that claims each chat as its dispatch notice arrives, as an eager officer in
Element does. Then, one chat at a time, so that each chat's CPU is its own:

  chat    a citizen opens a chat (POST, WebSocket) and writes; the officer claims it from the dispatch room,
          is invited and joins; --messages messages each way, alternating (each waits until the other side
          has it: the officer's client has decrypted it, the citizen's page has the frame); the citizen
          closes it. The bridge's and the homeserver's CPU from the POST until the bridge is idle again
          (outbox sent, puppet pool refilled, under 20 ms of bridge CPU in a second; bounded).
  floor   the same conversation between the officer and a plain nio user (encrypted room, same number of
          messages each way, the room left at the end), no bridge: the homeserver's CPU for it, and the
          bridge's, which only shows its idle cost over the same time.

Chats and floor conversations alternate, so both run under the same load (the machine is shared). Prints
the median and spread per chat for each process and the bridge's idle CPU per second. ``--profile FILE``
runs the bridge under cProfile (its main thread; the profile is written when the bridge stops) — its
figures are then inflated by the profiler and only the profile itself is of use. Every process it starts
is stopped by PID in a ``finally``; every wait is bounded; nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import logging
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nio  # noqa: E402


def _load(name: str, file: str) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / file)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


load = _load("bench_load", "load.py")
latency = sys.modules["bench_latency"]
cpu_seconds, log = latency.cpu_seconds, latency.log

from tests.conftest import OFFICERS, PASSWORD, SERVER  # noqa: E402
from tests.support.bridge_db import room_of, rows  # noqa: E402
from tests.support.officer import NioOfficer  # noqa: E402
from tests.support.visitor import Visitor  # noqa: E402
from tests.support.waiting import until  # noqa: E402

AGENCY, TOPIC = "central", "general"
FLOOR_USER = "floorpeer"
STEP_TIMEOUT = 60.0            # one message, join or close at most
IDLE_CPU = 0.020               # "idle": under this much bridge CPU in IDLE_WINDOW
IDLE_WINDOW = 1.0
IDLE_TIMEOUT = 30.0


class Life:
    def __init__(self, args: Any, dir: Path, bridge: Any, synapse: Any) -> None:
        self.args, self.dir, self.bridge, self.synapse = args, dir, bridge, synapse
        self.db = dir / "precinct.db"
        self.officer_id = f"@{OFFICERS[AGENCY]}:{SERVER}"
        self.officer = NioOfficer(synapse.url, self.officer_id, PASSWORD, dir / "officer-store")
        self.officer.auto_claim = lambda number: True
        self.floor = NioOfficer(synapse.url, f"@{FLOOR_USER}:{SERVER}", PASSWORD, dir / "floor-store")
        self.run_id = uuid.uuid4().hex[:6]
        self.cpu: dict[str, dict[str, list[float]]] = {"chat": {}, "floor": {}}
        self.idle_per_s: list[float] = []
        self.failed: dict[str, int] = {}
        self.phases: dict[str, list[float]] = {}      # the bridge's CPU per part of a chat's life
        self.windows: list[tuple[float, float]] = []   # wall-clock spans of the chats measured

    def phase(self, name: str, since: float) -> float:
        now = cpu_seconds(self.bridge.pid)
        self.phases.setdefault(name, []).append(now - since)
        return now

    def now(self) -> dict[str, float]:
        return {"bridge": cpu_seconds(self.bridge.pid), "homeserver": cpu_seconds(self.synapse.pid),
                "clients": cpu_seconds(os.getpid())}

    def record(self, kind: str, before: dict[str, float]) -> dict[str, float]:
        after = self.now()
        spent = {k: after[k] - before[k] for k in after}
        for k, v in spent.items():
            self.cpu[kind].setdefault(k, []).append(v)
        return spent

    def pool_ready(self) -> bool:
        want = self.args.pool_size
        return rows(self.db, "SELECT COUNT(*) FROM puppets WHERE chat_id IS NULL AND registered = 1 AND "
                             "device_created = 1 AND cross_signed = 1")[0][0] >= want

    async def bridge_idle(self) -> None:
        """Outbox sent, pool refilled, then the bridge under IDLE_CPU in IDLE_WINDOW (bounded)."""
        deadline = time.monotonic() + IDLE_TIMEOUT
        while time.monotonic() < deadline:
            if not rows(self.db, "SELECT 1 FROM outbox WHERE state = 'pending' LIMIT 1") and self.pool_ready():
                break
            await asyncio.sleep(0.2)
        while time.monotonic() < deadline:
            c0 = cpu_seconds(self.bridge.pid)
            await asyncio.sleep(IDLE_WINDOW)
            if cpu_seconds(self.bridge.pid) - c0 < IDLE_CPU:
                return
        log("bridge not idle in time")

    async def measure_idle(self, seconds: float = 3.0) -> None:
        c0, t0 = cpu_seconds(self.bridge.pid), time.monotonic()
        await asyncio.sleep(seconds)
        self.idle_per_s.append((cpu_seconds(self.bridge.pid) - c0) / (time.monotonic() - t0))

    # -- one chat, its whole life --
    async def chat(self, i: int) -> None:
        v = Visitor(self.bridge.public_url, source=f"127.0.0.{10 + i % 50}")
        before, started = self.now(), time.time()
        mark = before["bridge"]
        try:
            await v.create(topic=TOPIC, consent=True, display_name=f"Life {i}")
            await v.connect()
            room_id = None
            for k in range(self.args.messages):
                up = f"citizen {self.run_id} {i}.{k}"
                await v.send(up, wait_ack=False)
                if room_id is None:        # the first message makes the room; the officer claims and joins
                    room_id = await room_of(self.db, v.chat_id, STEP_TIMEOUT)
                    await self.officer.wait_joined(room_id, STEP_TIMEOUT)
                    mark = self.phase("open: POST → officer joined", mark)
                # (NioOfficer.messages: also what it could decrypt only later, as Element shows it)
                await self.officer.wait_message(lambda m, up=up: m.body == up, STEP_TIMEOUT, f"{up!r} at the officer")
                down = f"officer {self.run_id} {i}.{k}"
                await self.officer.send(room_id, down)
                await v.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == down, STEP_TIMEOUT,
                                   f"officer message {down!r} at the citizen")
            mark = self.phase("conversation: the messages", mark)
            status, body = await v.http("POST", f"/api/v1/chats/{v.chat_id}/close")
            if status != 200:
                raise RuntimeError(f"close answered {status} {body}")
            await v.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "closed", STEP_TIMEOUT,
                               "closed status")
            await self.bridge_idle()
            self.phase("close: until idle (pool refilled)", mark)
            spent = self.record("chat", before)
            self.windows.append((started, time.time()))
            log(f"chat {i}: bridge {spent['bridge'] * 1000:.0f} ms, homeserver {spent['homeserver'] * 1000:.0f} ms")
        except Exception as e:
            why = f"{type(e).__name__}: {e}"[:120]
            self.failed[why] = self.failed.get(why, 0) + 1
            log(f"chat {i} failed: {why}")
        finally:
            await v.close()

    # -- the same conversation without the bridge --
    async def floor_chat(self, i: int) -> None:
        fc = self.floor.client
        before = self.now()
        try:
            resp = await fc.room_create(name=f"Floor {i}", invite=[self.officer_id], initial_state=[
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
            if not isinstance(resp, nio.RoomCreateResponse):
                raise RuntimeError(f"floor room not created: {resp}")
            room = resp.room_id
            await self.officer.wait_joined(room, STEP_TIMEOUT)
            await until(lambda: room in fc.rooms and self.officer_id in fc.rooms[room].users, STEP_TIMEOUT,
                        "officer's join seen by the floor user")
            for k in range(self.args.messages):
                for sender, receiver, tag in ((self.floor, self.officer, "floor"), (self.officer, self.floor, "officer")):
                    body = f"{tag} {self.run_id} floor {i}.{k}"
                    await sender.send(room, body)
                    await receiver.wait_message(lambda m, body=body: m.body == body, STEP_TIMEOUT, f"{body!r}")
            await fc.room_leave(room)
            await self.bridge_idle()
            self.record("floor", before)
        except Exception as e:
            why = f"floor: {type(e).__name__}: {e}"[:120]
            self.failed[why] = self.failed.get(why, 0) + 1
            log(f"floor conversation {i} failed: {why}")

    async def run(self) -> None:
        await self.officer.start()
        await self.floor.start()
        try:
            await until(self.pool_ready, 120, "the puppet pool ready", 0.5)
            await self.chat(-1)                     # warm-up (first claim, dispatch room keys): not counted
            await self.floor_chat(-1)
            self.cpu = {"chat": {}, "floor": {}}
            self.phases.clear()
            self.windows.clear()
            self.failed.clear()
            for i in range(self.args.chats):
                await self.measure_idle()
                await self.chat(i)
                await self.floor_chat(i)
        finally:
            for c in (self.officer, self.floor):
                try:
                    await asyncio.wait_for(c.stop(), 15)
                except Exception as e:
                    log(f"stopping a client: {e}")


_REQUEST = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*\{(\S*)\} Processed request: .*"(GET|PUT|POST|DELETE) (\S+) HTTP')


def bridge_requests(log_path: Path, windows: list[tuple[float, float]]) -> collections.Counter[str]:
    """The bridge's requests to the homeserver within the chats' spans, by kind, from Synapse's access log
    (the bot's and the puppets': an appservice request names its user in ``user_id``)."""
    counts: collections.Counter[str] = collections.Counter()
    if not log_path.exists() or not windows:
        return counts
    for line in log_path.read_text(errors="replace").splitlines():
        m = _REQUEST.match(line)
        if not m:
            continue
        stamp, ms, requester, method, url = m.groups()
        ts = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
        if not any(a <= ts <= b for a, b in windows):
            continue
        asserted = re.search(r"[?&]user_id=([^&]+)", url)
        who = (asserted.group(1) if asserted else requester).replace("%40", "@")
        if not (who.startswith("@precinct") or who.startswith("@webchat_")):
            continue
        path = re.sub(r"^/_matrix/client/(v3|r0|v1)", "", url.split("?")[0])
        path = re.sub(r"/rooms/[^/]+", "/rooms/…", path)
        path = re.sub(r"/(send|state|sendToDevice)/([^/]+)/.*", r"/\1/\2", path)
        path = re.sub(r"/(profile|devices)/[^/]+", r"/\1/…", path)
        counts[f"{method} {path} ({'bot' if who.startswith('@precinct') else 'puppet'})"] += 1
    return counts


def report(life: Life, args: Any) -> None:
    def col(kind: str, who: str) -> str:
        xs = [x * 1000 for x in life.cpu[kind].get(who, [])]
        if not xs:
            return f"{'—':>22}"
        return f"{statistics.median(xs):>8.0f} ({min(xs):.0f}–{max(xs):.0f})".rjust(22)

    out = [f"\nChat life: {args.chats} chats, one at a time, {args.messages} messages each way, officer = nio "
           f"(auto-claim); {os.cpu_count()} cores{' — bridge under cProfile' if args.profile else ''}",
           f"{'CPU ms per conversation':<34}{'bridge median (min–max)':>24}{'homeserver':>24}{'bench clients':>24}"]
    for kind, name in (("chat", "chat through the bridge"), ("floor", "floor: nio ⇄ nio, no bridge")):
        n = len(life.cpu[kind].get("bridge", []))
        out.append(f"{name + f' (n={n})':<34}{col(kind, 'bridge'):>24}{col(kind, 'homeserver'):>24}"
                   f"{col(kind, 'clients'):>24}")
    br_chat = life.cpu["chat"].get("bridge", [])
    if br_chat:
        # The kernel counts CPU in 10 ms ticks, so each chat's figure (and the median) moves in steps of 10 ms;
        # the mean over all chats resolves a side-by-side comparison more finely.
        out.append(f"  bridge, mean per chat: {statistics.fmean(br_chat) * 1000:.1f} ms "
                   f"(total {sum(br_chat) * 1000:.0f} ms over {len(br_chat)} chats)")
    for name, xs in life.phases.items():
        out.append(f"  bridge, {name:<40}{statistics.median(xs) * 1000:>8.0f} ms "
                   f"({min(xs) * 1000:.0f}–{max(xs) * 1000:.0f})")
    requests = bridge_requests(life.synapse.log_path, life.windows)
    if requests:
        n = len(life.windows)
        out.append(f"  the bridge's homeserver requests per chat: {sum(requests.values()) / n:.1f} — "
                   + ", ".join(f"{k} {v / n:.1f}" for k, v in requests.most_common(12)))
    idle = statistics.median(life.idle_per_s) * 1000 if life.idle_per_s else float("nan")
    out.append(f"bridge idle: {idle:.1f} ms CPU per second (median of {len(life.idle_per_s)} 3 s readings)")
    hs_chat = life.cpu["chat"].get("homeserver", [])
    hs_floor = life.cpu["floor"].get("homeserver", [])
    br = life.cpu["chat"].get("bridge", [])
    if br and hs_floor:
        out.append(f"ratio: bridge CPU per chat ÷ homeserver CPU per floor conversation = "
                   f"{statistics.median(br) / statistics.median(hs_floor):.2f}; homeserver chat ÷ floor = "
                   f"{statistics.median(hs_chat) / statistics.median(hs_floor):.2f}")
    out.append("  A chat's CPU runs from its POST until the bridge is idle after the close (outbox sent, the pool "
               "refilled with the puppet the chat used); the floor's from createRoom until the bridge is idle after "
               "the leave. 'bench clients' is this process (officer, citizen or floor user).")
    if life.failed:
        out.append("failed: " + "; ".join(f"{k} ×{v}" for k, v in life.failed.items()))
    for line in latency.summarise_log(life.dir / "bridge.log")[:8]:
        out.append("  " + line)
    print("\n".join(out), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chats", type=int, default=10, help="chats measured (default 10, max 200)")
    ap.add_argument("--messages", type=int, default=10, help="messages each way per chat (default 10)")
    ap.add_argument("--pool-size", type=int, default=3, help="chats.puppet_pool_size (default 3, the product's)")
    ap.add_argument("--profile", type=Path, help="run the bridge under cProfile, writing its stats here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = ap.parse_args()
    if not (1 <= args.chats <= 200 and 1 <= args.messages <= 100):
        ap.error("out of range: see --help")
    signal.signal(signal.SIGTERM, load._terminate)
    logging.getLogger("nio").setLevel(logging.ERROR)
    dir = Path(tempfile.mkdtemp(prefix="precinct-life-"))
    synapse = bridge = None
    try:
        log(f"run directory {dir}")
        synapse, bridge, _ = load.stack(dir, args.pool_size, None, 120.0, profile=args.profile)
        synapse.start()
        for localpart in (OFFICERS[AGENCY], FLOOR_USER):
            synapse.register_user(localpart, PASSWORD)
        bridge.start()
        log(f"Synapse pid {synapse.pid}; bridge pid {bridge.pid} on {bridge.public_url}")
        life = Life(args, dir, bridge, synapse)
        asyncio.run(life.run())
        report(life, args)
        return 0
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        return 130
    finally:
        if bridge is not None:
            bridge.stop()
        if synapse is not None:
            synapse.stop()
        if args.profile and args.profile.exists():
            log(f"profile written to {args.profile}")
        if args.keep:
            log(f"kept {dir}")
        else:
            shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
