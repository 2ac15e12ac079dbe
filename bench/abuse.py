"""Abuse benchmark: floods a hostile visitor can send, against the real bridge and Synapse.

    .venv/bin/python bench/abuse.py [--requests 1000] [--addresses 10] [--in-flight 50]
                                    [--message-frames 2000] [--typing-frames 20000] [--keep]
                                    [--scenarios chats,messages,typing] [--stored-flood] [--busy-disk] [--quick]

Run from the repository root.  It starts its own Synapse (bridge/devtools/localhs.py) and the real
bridge process on free loopback ports in a temporary directory, configured as the integration
tests are (tests/conftest.py) but with the product's own defaults for every abuse defence.
Every request goes to loopback only; each hostile address is a 127.0.0.x address the client
socket binds to, as a real flood comes from addresses of its own.  Every loop is bounded in
count and in time, and every process is stopped by PID in a ``finally``.

Scenarios, each printed with what it cost:

  chat flood, one address     --requests POST /api/v1/chats from one address, --in-flight at once
  chat flood, N addresses     the same spread over --addresses addresses
  message flood               one citizen sends --message-frames message frames as fast as it can
  typing flood                one citizen sends --typing-frames typing frames as fast as it can

For each: requests accepted / refused (by status or error code), bridge RSS and the
homeserver's users, rooms and processed requests before and after; during each flood
``/health`` is polled (p50/p99) and legitimate citizens open a chat every 10 s (POST →
WebSocket ``ready``), each from an address of its own (127.0.0.100 …), as citizens elsewhere
would (one address opening a chat every few seconds is what ``limits.chats_per_address``
refuses); every 10 s stays within ``limits.chats_overall``'s refill, so a legitimate refusal
means the floods used up the overall bucket.  The chat floods come from 127.0.0.50 and
127.0.0.60 …; each WebSocket flooder starts its chat from an address of its own.  The floor is the same ``/health`` poll and the same
legitimate open on the idle bridge, measured first in the same run; the table prints
each flood's figures and their ratio to that floor.  For the message flood it also prints the
frames answered (acks and refusals) per second, from the first frame sent to the last answer.

``--scenarios`` runs only some floods (the floor always runs first).  ``--stored-flood`` lifts the
per-chat message rate (``web.chat_message_burst`` above the frame count) so that every frame of
the message flood is stored and acknowledged: one commit per frame, the store's worst case.
``--busy-disk`` runs bench/commit.py's disk neighbour (4 MiB writes + fdatasync, over and over, in the
run directory) during every scenario, the floor included, as a homeserver database sharing the disk
would.  Nothing is asserted: the exit status is 0 unless set-up fails.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from tests.support.bridge_db import room_of  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_latency", ROOT / "bench" / "latency.py")
latency = importlib.util.module_from_spec(_spec)        # its stack start-up, percentiles and log summary
assert _spec.loader is not None
sys.modules["bench_latency"] = latency
_spec.loader.exec_module(latency)
log, pct, rss_kb, summarise_log = latency.log, latency.pct, latency.rss_kb, latency.summarise_log

FLOOD_DEADLINE = 180.0           # seconds any one flood may run before it is cut short
HEALTH_EVERY = 0.02              # seconds between /health polls
LEGIT_EVERY = 10.0               # seconds between legitimate citizens' chats (within limits.chats_overall's refill)
LEGIT_HOST = "127.0.0.99"        # the /health probe
LEGIT_HOSTS = "127.0.0.{}"       # legitimate citizens: 127.0.0.100 … 127.0.0.199, a new one for each chat
FLOOD_HOST = "127.0.0.50"        # the one-address chat flood
WS_FLOOD_HOSTS = {"message": "127.0.0.51", "typing": "127.0.0.52"}   # each WebSocket flooder's own address
MANY_HOSTS = "127.0.0.{}"        # the N-address flood: 127.0.0.60, .61, …


def session(host: str, limit: int = 100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(host, 0), limit=limit),
                                 timeout=aiohttp.ClientTimeout(total=60))


@dataclass
class Snapshot:
    rss_mb: float
    users: int
    rooms: int
    requests: int


@dataclass
class Flood:
    name: str
    sent: int = 0
    outcomes: Counter = field(default_factory=Counter)
    health_ms: list[float] = field(default_factory=list)
    health_failed: int = 0
    legit_ms: list[float] = field(default_factory=list)
    legit_failed: int = 0
    seconds: float = 0.0
    before: Snapshot | None = None
    after: Snapshot | None = None
    typing_calls: int | None = None
    acks: int = 0
    answer_seconds: float = 0.0      # first frame sent → last ack or refusal received


class Bench:
    def __init__(self, synapse: Any, bridge: Any, public_url: str, db_path: Path, args: argparse.Namespace) -> None:
        self.synapse, self.bridge, self.url, self.args = synapse, bridge, public_url.rstrip("/"), args
        self.db_path = db_path
        self.legit_n = 0                 # legitimate chats opened so far (each from the next address)
        self.ws_url = self.url.replace("http", "ws", 1)

    # ---- what it cost --------------------------------------------------------------------------
    def _synapse_count(self, sql: str) -> int:
        db = sqlite3.connect(f"file:{self.synapse.data_dir / 'homeserver.db'}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute(sql).fetchone()[0]
        finally:
            db.close()

    def _log_lines(self, needle: str) -> int:
        try:
            with open(self.synapse.log_path, errors="replace") as fh:
                return sum(needle in line for line in fh)
        except OSError:
            return 0

    async def _settled_log_count(self, needle: str) -> int:
        """Synapse buffers its log for up to ~5 s: count until two reads 6 s apart agree (bounded)."""
        last = -1
        for _ in range(10):
            now = self._log_lines(needle)
            if now == last:
                return now
            last = now
            await asyncio.sleep(6)
        return last

    async def snapshot(self) -> Snapshot:
        requests = (self._log_lines("Processed request") if self.args.quick      # as far as Synapse has logged
                    else await self._settled_log_count("Processed request"))
        return Snapshot(round((rss_kb(self.bridge.pid) or 0) / 1024, 1),
                        self._synapse_count("SELECT count(*) FROM users"),
                        self._synapse_count("SELECT count(*) FROM rooms"), requests)

    # ---- a legitimate citizen and the health probe -------------------------------------------
    async def open_chat(self, http: aiohttp.ClientSession) -> tuple[str, str] | None:
        """POST a chat and wait for the WebSocket's ready frame; (chat_id, token), or None if refused."""
        async with http.post(self.url + "/api/v1/chats", json={"consent": True}) as r:
            if r.status != 201:
                return None
            data = await r.json()
        async with http.ws_connect(data["ws_url"]) as ws:
            await ws.send_json({"type": "auth", "token": data["token"], "since": 0})
            ready = await ws.receive_json(timeout=60)
            if ready.get("type") != "ready":
                return None
        await self.close_chat(http, data["chat_id"], data["token"])
        return data["chat_id"], data["token"]

    async def close_chat(self, http: aiohttp.ClientSession, chat_id: str, token: str) -> None:
        async with http.post(f"{self.url}/api/v1/chats/{chat_id}/close", json={},
                             headers={"Authorization": f"Bearer {token}"}):
            pass

    async def legit_loop(self, flood: Flood, stop: asyncio.Event) -> None:
        """Citizens elsewhere: each chat from an address of its own (one citizen does not start a chat every
        few seconds, and limits.chats_per_address would rightly refuse one who did)."""
        while not stop.is_set():
            self.legit_n += 1
            async with session(LEGIT_HOSTS.format(100 + self.legit_n % 100), 4) as http:
                t0 = time.monotonic()
                try:
                    ok = await asyncio.wait_for(self.open_chat(http), 60)
                except Exception:
                    ok = None
            if ok is None:
                flood.legit_failed += 1
            else:
                flood.legit_ms.append((time.monotonic() - t0) * 1000)
            try:
                await asyncio.wait_for(stop.wait(), LEGIT_EVERY)
            except asyncio.TimeoutError:
                pass

    async def health_loop(self, flood: Flood, stop: asyncio.Event) -> None:
        async with session(LEGIT_HOST, 2) as http:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    async with http.get(self.url + "/health") as r:
                        await r.read()
                        if r.status == 200:
                            flood.health_ms.append((time.monotonic() - t0) * 1000)
                        else:
                            flood.health_failed += 1
                except Exception:
                    flood.health_failed += 1
                try:
                    await asyncio.wait_for(stop.wait(), HEALTH_EVERY)
                except asyncio.TimeoutError:
                    pass

    async def measured(self, flood: Flood, attack) -> Flood:  # type: ignore[no-untyped-def]
        """Run ``attack(flood)`` with the health probe and the legitimate citizen alongside."""
        flood.before = await self.snapshot()
        neighbour = None
        if self.args.busy_disk:
            folder = self.db_path.parent / f"neighbour-{time.monotonic_ns()}"
            folder.mkdir()
            neighbour = subprocess.Popen([sys.executable, str(ROOT / "bench" / "commit.py"), "--busy-disk-child",
                                          "--dir", str(folder)], cwd=ROOT)
        stop = asyncio.Event()
        probes = [asyncio.create_task(self.health_loop(flood, stop)), asyncio.create_task(self.legit_loop(flood, stop))]
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(attack(flood), FLOOD_DEADLINE)
        except asyncio.TimeoutError:
            flood.outcomes["(cut short at the deadline)"] += 1
        flood.seconds = time.monotonic() - t0
        stop.set()
        await asyncio.gather(*probes, return_exceptions=True)
        if neighbour is not None:
            (folder / "stop").touch()
            try:
                neighbour.wait(60)
            except subprocess.TimeoutExpired:
                neighbour.kill()
                neighbour.wait()
        flood.after = await self.snapshot()
        log(f"{flood.name}: {dict(flood.outcomes)} in {flood.seconds:.1f} s")
        return flood

    # ---- the floods ------------------------------------------------------------------------------
    async def idle(self, flood: Flood) -> None:
        await asyncio.sleep(3 if self.args.quick else 10)      # the floor: the probes against an idle bridge

    async def _post_chats(self, flood: Flood, hosts: list[str]) -> None:
        per_host = [session(h, self.args.in_flight) for h in hosts]
        sem = asyncio.Semaphore(self.args.in_flight)
        created: list[tuple[aiohttp.ClientSession, str, str]] = []

        async def one(i: int) -> None:
            http = per_host[i % len(per_host)]
            async with sem:
                try:
                    async with http.post(self.url + "/api/v1/chats", json={"consent": True}) as r:
                        body = await r.json(content_type=None)
                        code = body.get("error", "created") if isinstance(body, dict) else "?"
                        flood.outcomes[f"{r.status} {code}"] += 1
                        if r.status == 201:
                            created.append((http, body["chat_id"], body["token"]))
                except Exception as e:
                    flood.outcomes[f"failed {type(e).__name__}"] += 1
                flood.sent += 1
        try:
            await asyncio.gather(*(one(i) for i in range(self.args.requests)))
        finally:
            # The flood's chats are closed afterwards, so they do not sit in the next flood's queue.
            for http, chat_id, token in created:
                try:
                    await self.close_chat(http, chat_id, token)
                except Exception:
                    pass
            for http in per_host:
                await http.close()

    async def chat_flood_one(self, flood: Flood) -> None:
        await self._post_chats(flood, [FLOOD_HOST])

    async def chat_flood_many(self, flood: Flood) -> None:
        await self._post_chats(flood, [MANY_HOSTS.format(60 + i) for i in range(self.args.addresses)])

    async def _ws_flood(self, flood: Flood, frames: int, frame) -> None:  # type: ignore[no-untyped-def]
        async with session(WS_FLOOD_HOSTS[frame(0)["type"]], 4) as http:
            async with http.post(self.url + "/api/v1/chats", json={"consent": True}) as r:
                if r.status != 201:
                    flood.outcomes[f"chat refused {r.status}"] += 1
                    return
                chat = await r.json()
            async with http.ws_connect(chat["ws_url"], max_msg_size=0) as ws:
                await ws.send_json({"type": "auth", "token": chat["token"], "since": 0})
                first = await ws.receive_json(timeout=60)
                if first.get("type") != "ready":
                    flood.outcomes[f"not ready: {first.get('error')}"] += 1
                    return
                # A real flooder first says something, so the chat has its puppet and room.
                await ws.send_json({"type": "message", "client_id": "hello", "body": "hello"})
                await room_of(self.db_path, chat["chat_id"], timeout=60)

                last_answer = [0.0]

                async def read() -> None:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            f = json.loads(msg.data)
                            if f.get("type") in ("ack", "error"):
                                flood.outcomes[f.get("type") + (f" {f['error']}" if "error" in f else "")] += 1
                                flood.acks += f.get("type") == "ack" and f.get("client_id") != "hello"
                                last_answer[0] = time.monotonic()
                reader = asyncio.create_task(read())
                first_sent = time.monotonic()
                for i in range(frames):
                    try:
                        await ws.send_str(json.dumps(frame(i)))
                    except Exception as e:
                        flood.outcomes[f"send failed {type(e).__name__}"] += 1
                        break
                    flood.sent += 1
                # Give the bridge until the deadline to answer every frame it means to answer.
                wanted = frames if frame(0)["type"] == "message" else 0
                t_end = time.monotonic() + 60
                while sum(n for k, n in flood.outcomes.items() if k.startswith(("ack", "error"))) < wanted \
                        and time.monotonic() < t_end and not reader.done():
                    await asyncio.sleep(0.2)
                if last_answer[0]:
                    flood.answer_seconds = last_answer[0] - first_sent
                await ws.close()
                await asyncio.gather(reader, return_exceptions=True)
            await self.close_chat(http, chat["chat_id"], chat["token"])

    async def message_flood(self, flood: Flood) -> None:
        run = uuid.uuid4().hex[:6]
        await self._ws_flood(flood, self.args.message_frames,
                             lambda i: {"type": "message", "client_id": f"{run}-{i}", "body": f"flood {run} {i}"})

    async def typing_flood(self, flood: Flood) -> None:
        before = await self._settled_log_count("/typing/")
        await self._ws_flood(flood, self.args.typing_frames, lambda i: {"type": "typing", "active": i % 2 == 0})
        flood.typing_calls = await self._settled_log_count("/typing/") - before


def ratio(x: float, floor: float) -> str:
    return "—" if not floor or x != x else f"×{x / floor:.1f}"


def report(floods: list[Flood], args: argparse.Namespace, summary: list[str]) -> None:
    floor = floods[0]
    f_h50, f_h99, f_legit = pct(floor.health_ms, 50), pct(floor.health_ms, 99), pct(floor.legit_ms, 50)
    out = [f"Precinct abuse benchmark — {time.strftime('%Y-%m-%d %H:%M')}; {args.requests} chat requests "
           f"({args.in_flight} in flight), {args.addresses} addresses, {args.message_frames} message frames, "
           f"{args.typing_frames} typing frames{'; busy disk' if args.busy_disk else ''}; "
           f"load average {os.getloadavg()[0]:.1f}", ""]
    out.append(f"{'scenario':<26} {'sent':>6} {'s':>6}  {'/health p50 / p99 ms':>24}  {'legit open p50 ms':>20}  "
               f"{'bridge RSS MB':>14}  {'HS users':>9} {'HS rooms':>9} {'HS requests':>11}")
    for f in floods:
        b, a = f.before, f.after
        h50, h99, lg = pct(f.health_ms, 50), pct(f.health_ms, 99), pct(f.legit_ms, 50)
        out.append(
            f"{f.name:<26} {f.sent:>6} {f.seconds:>6.1f}  "
            f"{h50:>7.1f} /{h99:>7.1f} ({ratio(h99, f_h99):>5})  {lg:>8.0f} ({ratio(lg, f_legit):>5})"
            f"{'':>3}{b.rss_mb:>6.0f}→{a.rss_mb:<6.0f}  {a.users - b.users:>+9} {a.rooms - b.rooms:>+9} "
            f"{a.requests - b.requests:>+11}")
    out.append("")
    out.append(f"floor (idle bridge, same run): /health p50 {f_h50:.1f} ms, p99 {f_h99:.1f} ms; "
               f"legitimate open p50 {f_legit:.0f} ms")
    for f in floods[1:]:
        outcome = ", ".join(f"{k}: {n}" for k, n in sorted(f.outcomes.items()))
        out.append(f"{f.name}: {outcome or '—'}; legitimate opens ok {len(f.legit_ms)}, refused/failed "
                   f"{f.legit_failed}; /health failures {f.health_failed}"
                   + (f"; homeserver typing calls {f.typing_calls}" if f.typing_calls is not None else "")
                   + (f"; {f.acks} acks, frames answered in {f.answer_seconds:.2f} s = "
                      f"{sum(n for k, n in f.outcomes.items() if k.startswith(('ack', 'error'))) / f.answer_seconds:.0f}"
                      f" answers/s, {f.acks / f.answer_seconds:.0f} acks/s" if f.answer_seconds else ""))
    out.append("HS users/rooms include the legitimate citizen's chats (one every "
               f"{LEGIT_EVERY:.0f} s) and the puppet pool's refills.")
    out.append(f"Bridge log: {len(summary)} distinct WARNING/ERROR kinds" + (":" if summary else "."))
    out += ["  " + line for line in summary]
    print("\n".join(out), flush=True)


def stack_config(dir: Path, args: argparse.Namespace) -> tuple[Any, Any, str]:
    """The test stack, minus anything the test config loosens: the product's defaults apply."""
    synapse, bridge, url = latency.start_stack(dir, 2)
    config = yaml.safe_load(bridge.config_path.read_text())
    for key in ("limits",):
        config.pop(key, None)
    config["chats"].pop("max_waiting_per_agency", None)     # the product's queue cap applies
    if args.stored_flood:                                   # every frame of the message flood stored and acked
        config["web"]["chat_message_burst"] = args.message_frames + 10
    bridge.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return synapse, bridge, url


SCENARIOS = ("chats", "messages", "typing")


async def run(bench: Bench, floods: list[Flood]) -> None:
    stored = " (every frame stored)" if bench.args.stored_flood else ""
    for key, name, attack in [("floor", "floor (idle)", bench.idle),
                              ("chats", "chat flood, 1 address", bench.chat_flood_one),
                              ("chats", f"chat flood, {bench.args.addresses} addresses", bench.chat_flood_many),
                              ("messages", f"message flood, 1 citizen{stored}", bench.message_flood),
                              ("typing", "typing flood, 1 citizen", bench.typing_flood)]:
        if key != "floor" and key not in bench.args.scenarios:
            continue
        log(f"{name} …")
        floods.append(await bench.measured(Flood(name), attack))


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="chat requests per chat flood (default 1000)")
    ap.add_argument("--addresses", type=int, default=10, help="addresses of the spread flood (default 10, max 30)")
    ap.add_argument("--in-flight", type=int, default=50, help="chat requests in flight (default 50)")
    ap.add_argument("--message-frames", type=int, default=2000, help="message frames in the flood (default 2000)")
    ap.add_argument("--typing-frames", type=int, default=20000, help="typing frames in the flood (default 20000)")
    ap.add_argument("--quick", action="store_true",
                    help="CI's reduced run: a 3 s floor, homeserver request counts without waiting for Synapse's log")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"floods to run after the floor, comma-separated (default {','.join(SCENARIOS)})")
    ap.add_argument("--stored-flood", action="store_true",
                    help="lift the per-chat message rate so every frame of the message flood is stored")
    ap.add_argument("--busy-disk", action="store_true",
                    help="a neighbour process keeps the disk busy during every scenario (bench/commit.py)")
    args = ap.parse_args()
    args.scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    if not args.scenarios <= set(SCENARIOS):
        ap.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    if not (1 <= args.addresses <= 30) or min(args.requests, args.in_flight, args.message_frames,
                                               args.typing_frames) < 1 or args.requests > 10_000:
        ap.error("counts must be positive, --requests at most 10000, --addresses from 1 to 30")
    signal.signal(signal.SIGTERM, _terminate)
    logging.getLogger("aiohttp").setLevel(logging.ERROR)
    dir = Path(tempfile.mkdtemp(prefix="precinct-abuse-"))
    synapse = bridge = None
    floods: list[Flood] = []
    try:
        log(f"run directory {dir}")
        synapse, bridge, url = stack_config(dir, args)
        synapse.start()
        bridge.start()
        log(f"Synapse pid {synapse.pid} on {synapse.url}; bridge pid {bridge.pid} on {url}")
        asyncio.run(run(Bench(synapse, bridge, url, dir / "precinct.db", args), floods))
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        return 130
    except Exception as e:
        log(f"set-up or run failed: {type(e).__name__}: {e}")
        if bridge is not None:
            log("bridge log tail:\n" + bridge.tail(40))
        return 1
    finally:
        if bridge is not None:
            bridge.stop()
        if synapse is not None:
            synapse.stop()
        if floods:
            report(floods, args, summarise_log(dir / "bridge.log"))
        if args.keep:
            log(f"kept {dir}")
        else:
            shutil.rmtree(dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
