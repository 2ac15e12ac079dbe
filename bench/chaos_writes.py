"""Crash during writes (issue 13, chaos): the bridge is SIGKILLed in the middle of bursts of writes, again
and again; after every kill the store and the crypto stores must pass SQLite's integrity check and hold
every message the visitor API acknowledged before the kill.

    .venv/bin/python bench/chaos_writes.py [--kills 100] [--citizens 4] [--seed N] [--keep]

Its own Synapse and the real bridge process on loopback (the tests' set-up), no officers: citizens write
over the visitor API's WebSocket as fast as the bridge acknowledges (each frame sent without waiting for the
previous ack), while the bridge also sends their messages on to their rooms and takes the homeserver's
appservice pushes of them back — the store's, the outbox's and the puppets' crypto stores' writes all under
way. Once the burst's first ack is back, at a random moment of the next ``--window`` seconds the bridge is SIGKILLed; with it
dead, every SQLite file of the bridge (the store and each crypto store) is opened read-only and checked with
``PRAGMA integrity_check``, and every acknowledged message is looked up in the store by its client ID (same
chat, same body, same seq as its ack). Then the bridge is started again at once (until ``/health`` answers;
the Matrix side catches up in the background) and the citizens reconnect for the next burst.

Pass criterion, checked after every kill, the run failing (exit 1) if missed once: integrity "ok" for every
file, acknowledged messages missing from the store: 0. Figures: kills, integrity checks ok, acknowledged
messages checked, lost, time per cycle (kill → restarted → burst → kill; p50 / max). The last line is JSON
for scripts and the ``make test`` guard. Every process it starts is stopped by PID in a ``finally``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from chaos_parts import TOPIC, Stack, log, until
from tests.support.visitor import Visitor

SQLITE_HEADER = b"SQLite format 3\x00"


def bridge_databases(stack: Stack) -> list[Path]:
    """Every SQLite file the bridge keeps: the store and each crypto store (not Synapse's)."""
    found = []
    for path in sorted(stack.dir.rglob("*")):
        if (stack.dir / "synapse") in path.parents or not path.is_file() or path.name.endswith(("-wal", "-shm")):
            continue
        with open(path, "rb") as f:
            if f.read(16) == SQLITE_HEADER:
                found.append(path)
    return found


@contextlib.contextmanager
def copy_of(path: Path, scratch: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a copy of a database as the dead bridge left it: the file and its WAL, not the shared-memory
    index, which SQLite rebuilds from the WAL as a crash's recovery does. The original stays as it was for the
    restarted bridge to find (a read-only connection cannot recover a WAL)."""
    copy = scratch / path.name
    for suffix in ("", "-wal"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
        if Path(f"{path}{suffix}").exists():
            shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
    conn = sqlite3.connect(copy, timeout=10)
    try:
        yield conn
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)


def integrity(path: Path, scratch: Path) -> str:
    """``PRAGMA integrity_check``: "ok", or what is wrong."""
    with copy_of(path, scratch) as conn:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


def missing(db_path: Path, scratch: Path, acked: dict[str, tuple[str, str, int]]) -> list[str]:
    """Client IDs acknowledged (client_id → (chat_id, body, seq)) that the store does not hold as acknowledged."""
    with copy_of(db_path, scratch) as conn:
        lost = []
        for client_id, (chat_id, body, seq) in acked.items():
            row = conn.execute("SELECT body, seq FROM messages WHERE chat_id = ? AND client_id = ?",
                               [chat_id, client_id]).fetchone()
            if row is None or tuple(row) != (body, seq):
                lost.append(client_id)
        return lost


class Writer(Visitor):
    """A citizen who writes without waiting: every frame goes out at once, acks are counted as they come."""

    def __init__(self, base_url: str, index: int) -> None:
        super().__init__(base_url)
        self.index = index
        self.bodies: dict[str, str] = {}           # client_id → body of everything sent

    def acked(self) -> dict[str, tuple[str, str, int]]:
        return {f["client_id"]: (self.chat_id, self.bodies[f["client_id"]], f["seq"])
                for f in self.frames if f.get("type") == "ack" and f.get("client_id") in self.bodies}

    def refusals(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "error"]

    async def burst(self, stop: asyncio.Event) -> None:
        """Write until ``stop`` or the socket drops (the kill); at most 50 frames in flight unacknowledged."""
        answered = {f.get("client_id") for f in self.frames if f.get("type") in ("ack", "error")}
        sent = 0                                    # in this burst (what an earlier kill cut off is not in flight)
        try:
            while not stop.is_set() and self.ws is not None and not self.ws.closed:
                answers = sum(1 for f in self.frames if f.get("type") in ("ack", "error")
                              and f.get("client_id") not in answered)
                if sent - answers >= 50:
                    await asyncio.sleep(0.005)
                    continue
                sent += 1
                client_id = uuid.uuid4().hex
                self.bodies[client_id] = f"c{self.index} w{len(self.bodies)}"
                await self.send(self.bodies[client_id], client_id=client_id, wait_ack=False)
                await asyncio.sleep(0)
        except Exception:
            pass                                    # the socket went with the bridge


async def reconnect(w: Writer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await w.connect()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    rnd = random.Random(args.seed)
    bridge = stack.bridge
    await asyncio.to_thread(bridge.start)            # the first start waits for Matrix readiness (rooms, pool)
    writers = [Writer(stack.public_url, i) for i in range(args.citizens)]
    cycles: list[float] = []
    scratch = Path(tempfile.mkdtemp(prefix="precinct-chaos-check-"))
    checks_ok = checks = 0
    lost: list[str] = []
    bad: list[str] = []
    try:
        for w in writers:
            await w.create(topic=TOPIC, display_name=f"Writer {w.index}")
        for n in range(args.kills):
            began = time.monotonic()
            for w in writers:
                await reconnect(w)
            stop = asyncio.Event()
            acked_before = sum(len(w.acked()) for w in writers)
            bursts = [asyncio.create_task(w.burst(stop)) for w in writers]
            # The kill falls while acks flow: after the first of this burst (a restarting bridge is busy with
            # its Matrix side at first), at a random moment of the next ``--window`` seconds.
            await until(lambda: sum(len(w.acked()) for w in writers) > acked_before, 60, "the burst's first ack")
            await asyncio.sleep(rnd.uniform(0.0, args.window))
            await asyncio.to_thread(bridge.kill9)       # mid-burst: frames in flight, acks waiting for flushes
            stop.set()
            await asyncio.gather(*bursts)
            for w in writers:
                await w.disconnect()
            for path in bridge_databases(stack):
                checks += 1
                verdict = integrity(path, scratch)
                if verdict == "ok":
                    checks_ok += 1
                else:
                    bad.append(f"kill {n + 1}: {path.relative_to(stack.dir)}: {verdict[:200]}")
            acked = {k: v for w in writers for k, v in w.acked().items()}
            gone = missing(stack.db_path, scratch, acked)
            lost += gone
            if gone or bad:
                log(f"kill {n + 1}: lost {len(gone)} acknowledged, integrity failures so far {len(bad)}")
            await asyncio.to_thread(bridge.start, 60, ready=False)   # until /health answers at all
            cycles.append(time.monotonic() - began)
            if (n + 1) % 10 == 0:
                log(f"{n + 1} kills, {len(acked)} acknowledged so far, lost {len(lost)}")
        acked = {k: v for w in writers for k, v in w.acked().items()}
        return {"kills": len(cycles), "files_checked": checks, "integrity_ok": checks_ok,
                "integrity_failures": bad[:10], "sent": sum(len(w.bodies) for w in writers),
                "acknowledged": len(acked), "refused": sum(len(w.refusals()) for w in writers),
                "lost": len(set(lost)), "lost_first": sorted(set(lost))[:10],
                "files": [str(p.relative_to(stack.dir)) for p in bridge_databases(stack)],
                "cycle_p50_s": round(statistics.median(cycles), 2) if cycles else None,
                "cycle_max_s": round(max(cycles), 2) if cycles else None}
    finally:
        for w in writers:
            await w.close()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--citizens", type=int, default=4)
    parser.add_argument("--window", type=float, default=1.5, help="each kill falls within N seconds of the burst's first ack")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, store)")
    args = parser.parse_args()
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    logging.basicConfig(level=logging.WARNING)
    log(f"crash during writes: {args.kills} kills, {args.citizens} citizens, seed {args.seed}")
    # No per-chat message rate: a burst is every frame the bridge will take, not 20 and then refusals.
    stack = Stack.prepare(keep=args.keep, web={"chat_message_burst": 1_000_000, "chat_messages_per_minute": 1_000_000})
    try:
        result = asyncio.run(run(stack, args))
    finally:
        stack.close()
        if args.keep:
            log("kept:", stack.dir)
    result["seed"] = args.seed
    ok = result["integrity_ok"] == result["files_checked"] and result["lost"] == 0 and result["kills"] == args.kills
    print(f"\nkills {result['kills']}; SQLite files checked after each kill: {len(result['files'])} "
          f"({', '.join(result['files'])})")
    print(f"integrity_check ok {result['integrity_ok']} of {result['files_checked']}   criterion: all ok: "
          f"{'met' if result['integrity_ok'] == result['files_checked'] else 'MISSED'}")
    print(f"acknowledged messages checked {result['acknowledged']} (of {result['sent']} sent), lost "
          f"{result['lost']}   criterion: lost 0: {'met' if result['lost'] == 0 else 'MISSED'}")
    print(f"refusals (error frames) {result['refused']}; time per cycle p50 {result['cycle_p50_s']} s, "
          f"max {result['cycle_max_s']} s")
    for line in result["integrity_failures"]:
        print("  integrity:", line)
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
