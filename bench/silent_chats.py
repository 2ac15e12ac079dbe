"""What chats that never say anything cost: bridge RSS, puppets, homeserver users and rooms.

    .venv/bin/python bench/silent_chats.py [--chats 200] [--in-flight 10] [--keep]

Run from the repository root. It starts its own Synapse and the real bridge on free loopback ports in a
temporary directory (the integration tests' set-up, bench/latency.py's start_stack, puppet pool 2), opens
--chats chats through POST /api/v1/chats (no WebSocket, no message: silent citizens) with the queue cap
off, so every one is accepted, waits until the bridge's puppets and the homeserver's rooms stop changing
(bounded), and prints before / after. Run it on two commits to compare them. Every process it starts is
stopped by PID in a ``finally``; nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_latency", ROOT / "bench" / "latency.py")
latency = importlib.util.module_from_spec(_spec)
assert _spec.loader is not None
sys.modules["bench_latency"] = latency
_spec.loader.exec_module(latency)

SETTLE_SECONDS = 120.0


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def snapshot(synapse, bridge, bridge_db: Path) -> dict[str, float]:
    hs = synapse.data_dir / "homeserver.db"
    return {"bridge RSS MB": round((latency.rss_kb(bridge.pid) or 0) / 1024, 1),
            "bridge puppets": count(bridge_db, "SELECT COUNT(*) FROM puppets"),
            "HS users": count(hs, "SELECT COUNT(*) FROM users"),
            "HS rooms": count(hs, "SELECT COUNT(*) FROM rooms")}


async def settle(synapse, bridge, bridge_db: Path) -> dict[str, float]:
    """Until puppets and rooms agree over two reads 5 s apart (at most SETTLE_SECONDS)."""
    deadline, last = time.monotonic() + SETTLE_SECONDS, None
    while True:
        now = snapshot(synapse, bridge, bridge_db)
        key = (now["bridge puppets"], now["HS rooms"], now["HS users"])
        if key == last or time.monotonic() > deadline:
            return now
        last = key
        await asyncio.sleep(5)


ADDRESSES = 50           # requests come from 127.0.0.100 … .149, so per-address admission limits stay out of it


async def open_chats(url: str, n: int, in_flight: int) -> int:
    accepted = 0
    gate = asyncio.Semaphore(in_flight)
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{100 + i}", 0)))
                for i in range(ADDRESSES)]
    try:
        async def one(i: int) -> None:
            nonlocal accepted
            async with gate, sessions[i % ADDRESSES].post(url + "/api/v1/chats", json={"consent": True}) as r:
                accepted += r.status == 201
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for http in sessions:
            await http.close()
    return accepted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chats", type=int, default=200, help="silent chats to open (default 200, max 2000)")
    ap.add_argument("--in-flight", type=int, default=10, help="requests in flight (default 10)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    n = max(1, min(args.chats, 2000))
    dir = Path(tempfile.mkdtemp(prefix="precinct-silent-"))
    synapse = bridge = None
    try:
        synapse, bridge, url = latency.start_stack(dir, 2)
        config = yaml.safe_load(bridge.config_path.read_text())
        from bridge import config as schema
        if any(k.path == "chats.max_waiting_per_agency" for k in schema.SCHEMA):   # (older commits have no cap)
            config.setdefault("chats", {})["max_waiting_per_agency"] = 0       # measure the chats, not the cap
        bridge.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        synapse.start()
        bridge.start()
        db = bridge.config_path.parent / "precinct.db"
        before = asyncio.run(settle(synapse, bridge, db))
        started = time.monotonic()
        accepted = asyncio.run(open_chats(url, n, args.in_flight))
        took = time.monotonic() - started
        after = asyncio.run(settle(synapse, bridge, db))
        print(f"{accepted}/{n} silent chats accepted in {took:.1f} s ({args.in_flight} in flight)")
        print(f"{'':16}{'before':>10}{'after':>10}{'per chat':>10}")
        for k in before:
            print(f"{k:16}{before[k]:>10}{after[k]:>10}{(after[k] - before[k]) / max(accepted, 1):>10.3f}")
        return 0
    finally:
        if bridge is not None:
            bridge.stop()
        if synapse is not None:
            synapse.stop()
        if args.keep:
            print(f"kept {dir}")
        else:
            shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
