"""Commit benchmark: what a flood of stored messages costs everyone else, with and without group commit.

    .venv/bin/python bench/commit.py [--frames 2000] [--citizens 1,20] [--rounds 2] [--keep]

Run from the repository root.  The bridge's own visitor API and public listener (bridge.web), chat
service, records (hash chain, search index) and store, on a real SQLite file in a temporary directory,
served by a child process on a free loopback port.  There is no homeserver: a chat's room is never made,
so nothing is sent on, and what is measured is the store's commits and their acknowledgements.

Two modes, alternating round by round in the same run (a fresh server and database each time):

  full    synchronous=FULL and nothing awaited: every commit fsyncs on the event loop (main before 333168b)
  group   synchronous=NORMAL and the durability barrier (store/db.py): the event loop writes the WAL; acks
          wait for a flush in a worker thread, shared by everyone waiting (group commit)

For each mode and each number of citizens: every citizen opens a chat and sends its share of --frames
message frames over its WebSocket as fast as it can (the per-chat message rate is lifted, so every frame
is one stored message: message row, outbox row, record entry); meanwhile ``/health`` is polled every
20 ms on another connection.  The floor is the same poll against the idle server, measured first in
the same round.  Prints /health p50/p99 idle and during the flood (and their ratio to the floor), acks
per second, and the flushes the barrier made.  Nothing is asserted; every process is stopped by PID.

``--busy-disk`` runs, in both modes alike, a neighbour process that keeps writing 4 MiB and fdatasync-ing
a file on the same filesystem during each flood (as a homeserver's database sharing the disk would), so
the cost of a sync on the event loop shows; the report prints the disk's own sync times, probed before
and after the run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

HEALTH_EVERY = 0.02
FLOOR_SECONDS = 5.0
DEADLINE = 120.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# ---- the server (child process) ---------------------------------------------------------------------

def serve(mode: str, port: int, folder: Path) -> None:
    from aiohttp import web

    from bridge.chats.hub import ChatHub
    from bridge.chats.lifecycle import ChatService
    from bridge.records import Records
    from bridge.records.signing import Signer
    from bridge.store import Store
    from bridge.web.server import public_app
    from bridge.web.visitor_api import VisitorApi
    from tests.support.configs import example_config

    config = example_config(folder)
    config.values.update({"web.chat_message_burst": 1_000_000, "chats.max_waiting_per_agency": 0,
                          "web.max_sockets_per_address": 1000})
    for key in ("limits.chats_per_address", "limits.chats_overall"):      # the citizens all come from 127.0.0.1
        if key in config.values:
            config.values[key] = {"burst": 1000, "per_hour": 100_000}
    store = Store.open(folder / "precinct.db", group_commit=mode == "group")
    records = Records(store, Signer.load_or_create(folder / "signing.key"))
    chats = ChatService(config, store, None, None, None, ChatHub(), lambda: None, records)  # type: ignore[arg-type]
    chats.start_setup = lambda chat_id: None             # no homeserver: chats stay rows, nothing is sent on
    app = public_app(VisitorApi(config, store, chats), durable=store.db.durable)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"flushes": store.db.flushes, "changes": store.db.db.conn.total_changes,
                                  "synchronous": store.db.execute("PRAGMA synchronous").fetchone()[0]})
    app.router.add_get("/bench/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=True)
    store.close()


# ---- the clients ---------------------------------------------------------------------------------------

@dataclass
class Result:
    mode: str
    citizens: int
    floor_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_failed: int = 0
    acks: int = 0
    errors: int = 0
    seconds: float = 0.0
    flushes: int = 0
    synchronous: int = -1


async def poll_health(url: str, into: list[float], stop: asyncio.Event) -> int:
    failed = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                async with http.get(url + "/health") as r:
                    await r.read()
                    if r.status == 200:
                        into.append((time.monotonic() - t0) * 1000)
                    else:
                        failed += 1
            except aiohttp.ClientError:
                failed += 1
            try:
                await asyncio.wait_for(stop.wait(), HEALTH_EVERY)
            except asyncio.TimeoutError:
                pass
    return failed


async def citizen(http: aiohttp.ClientSession, url: str, n: int, frames: int, result: Result,
                  started: list[float], answered: list[float]) -> None:
    async with http.post(url + "/api/v1/chats", json={"consent": True}) as r:
        assert r.status == 201, await r.text()
        chat = await r.json()
    ws_url = url.replace("http", "ws", 1) + f"/api/v1/chats/{chat['chat_id']}/ws"    # not the config's public URL
    async with http.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_json({"type": "auth", "token": chat["token"], "since": 0})
        while (await ws.receive_json(timeout=DEADLINE)).get("type") != "ready":
            pass
        answers = 0

        async def read() -> None:
            nonlocal answers
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                f = json.loads(msg.data)
                if f.get("type") in ("ack", "error"):
                    result.acks += f["type"] == "ack"
                    result.errors += f["type"] == "error"
                    answers += 1
                    answered.append(time.monotonic())
                    if answers == frames:
                        return
        reader = asyncio.create_task(read())
        started.append(time.monotonic())
        for i in range(frames):
            await ws.send_json({"type": "message", "client_id": f"c{n}-{i}", "body": f"flood {n} {i} " * 4})
        await asyncio.wait_for(reader, DEADLINE)


async def measure(url: str, result: Result, frames: int) -> None:
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_health(url, result.floor_ms, stop))
    await asyncio.sleep(FLOOR_SECONDS)              # the floor: the same poll, idle server, this round
    stop.set()
    await poller
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_health(url, result.health_ms, stop))
    started: list[float] = []
    answered: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as http:
        share = frames // result.citizens
        await asyncio.gather(*(citizen(http, url, n, share, result, started, answered)
                               for n in range(result.citizens)))
        stop.set()
        result.health_failed = await poller
        result.seconds = max(answered) - min(started)
        async with http.get(url + "/bench/stats") as r:
            stats = await r.json()
    result.flushes, result.synchronous = stats["flushes"], stats["synchronous"]


async def wait_up(url: str, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with http.get(url + "/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not come up")


def free_port() -> int:
    from bridge.devtools.localhs import free_port as free
    return free()


def busy_disk(folder: Path, stop_file: Path) -> None:
    """The neighbour (child process): write 4 MiB and fdatasync, over and over, until ``stop_file`` appears."""
    chunk = os.urandom(4 * 1024 * 1024)
    fd = os.open(folder / "neighbour.dat", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for i in range(100_000):                 # bounded: a few minutes at most on any disk
            if stop_file.exists():
                break
            os.pwrite(fd, chunk, (i % 16) * len(chunk))
            os.fdatasync(fd)
    finally:
        os.close(fd)


async def one(mode: str, citizens: int, frames: int, base: Path, busy: bool) -> Result:
    folder = base / f"{mode}-{citizens}-{time.monotonic_ns()}"
    folder.mkdir()
    port = free_port()
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", mode, "--port", str(port),
                                 "--dir", str(folder)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    neighbour = None
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_up(url, proc)
        if busy:
            neighbour = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--busy-disk-child",
                                          "--dir", str(folder)], cwd=ROOT)
        result = Result(mode, citizens)
        await measure(url, result, frames)
        return result
    finally:
        if neighbour is not None:
            (folder / "stop").touch()
            try:
                neighbour.wait(60)
            except subprocess.TimeoutExpired:
                neighbour.kill()
                neighbour.wait()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def disk_floor(folder: Path, n: int = 200) -> list[float]:
    """What one small append + fdatasync costs on this disk now (the wait FULL put on the event loop)."""
    times = []
    fd = os.open(folder / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
    return times


def report(results: list[Result], args: argparse.Namespace, disk: list[float], busy: list[float]) -> None:
    print(f"Precinct commit benchmark — {time.strftime('%Y-%m-%d %H:%M')}; {args.frames} message frames per flood, "
          f"{args.rounds} round(s), modes alternating{', busy disk' if args.busy_disk else ''}; "
          f"load average {os.getloadavg()[0]:.1f}; "
          f"disk: 4 KiB append + fdatasync p50 {pct(disk, 50):.2f} ms, p99 {pct(disk, 99):.2f} ms"
          + (f" (with the neighbour: p50 {pct(busy, 50):.1f} ms, p99 {pct(busy, 99):.1f} ms)" if busy else ""))
    print(f"{'mode':<6} {'citizens':>8} {'sync':>4}  {'floor /health p50 / p99 ms':>27}  "
          f"{'flood /health p50 / p99 ms':>27}  {'p99 ×floor':>10}  {'acks':>5} {'acks/s':>7} {'flushes':>8}")
    for r in results:
        f50, f99, h50, h99 = pct(r.floor_ms, 50), pct(r.floor_ms, 99), pct(r.health_ms, 50), pct(r.health_ms, 99)
        print(f"{r.mode:<6} {r.citizens:>8} {r.synchronous:>4}  {f50:>12.1f} / {f99:>10.1f}  {h50:>12.1f} / {h99:>10.1f}"
              f"  {h99 / f99:>9.1f}×  {r.acks:>5} {r.acks / r.seconds:>7.0f} {r.flushes:>8}"
              + (f"  ({r.errors} errors, {r.health_failed} /health failures)" if r.errors or r.health_failed else ""))
    for mode in ("full", "group"):
        for n in args.citizens:
            rs = [r for r in results if r.mode == mode and r.citizens == n]
            if len(rs) > 1:
                floor = [x for r in rs for x in r.floor_ms]
                during = [x for r in rs for x in r.health_ms]
                print(f"{mode:<6} {n:>8} all rounds: /health floor p50 {pct(floor, 50):.1f} p99 {pct(floor, 99):.1f} ms; "
                      f"flood p50 {pct(during, 50):.1f} p99 {pct(during, 99):.1f} ms; acks/s "
                      f"{sum(r.acks for r in rs) / sum(r.seconds for r in rs):.0f}")


async def run(args: argparse.Namespace, base: Path) -> list[Result]:
    results = []
    for round_ in range(args.rounds):
        modes = ("full", "group") if round_ % 2 == 0 else ("group", "full")
        for n in args.citizens:
            for mode in modes:
                print(f"[{time.strftime('%H:%M:%S')}] round {round_ + 1}: {mode}, {n} citizen(s) …", flush=True)
                results.append(await one(mode, n, args.frames, base, args.busy_disk))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2000, help="message frames per flood, shared by the citizens")
    ap.add_argument("--citizens", default="1,20", help="citizen counts, comma-separated (default 1,20)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds; each runs both modes (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (databases, server logs)")
    ap.add_argument("--busy-disk", action="store_true", help="a neighbour keeps the disk busy during each flood")
    ap.add_argument("--serve", choices=("full", "group"), help=argparse.SUPPRESS)
    ap.add_argument("--busy-disk-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.dir)
        return 0
    if args.busy_disk_child:
        busy_disk(args.dir, args.dir / "stop")
        return 0
    args.citizens = [int(x) for x in args.citizens.split(",") if x.strip()]
    if not args.citizens or min(args.citizens) < 1 or args.frames < max(args.citizens) or args.frames > 100_000:
        ap.error("citizens must be positive, frames at least the largest citizen count and at most 100000")
    base = Path(tempfile.mkdtemp(prefix="precinct-commit-"))
    try:
        disk = disk_floor(base)
        busy: list[float] = []
        if args.busy_disk:                      # the same probe with the neighbour writing
            (base / "probe").mkdir()
            neighbour = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--busy-disk-child",
                                          "--dir", str(base / "probe")], cwd=ROOT)
            try:
                time.sleep(1)
                busy = disk_floor(base / "probe", 50)
            finally:
                (base / "probe" / "stop").touch()
                neighbour.wait(60)
        results = asyncio.run(run(args, base))
        report(results, args, disk + disk_floor(base), busy)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
