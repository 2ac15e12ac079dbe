#!/usr/bin/env python3
"""WebSocket fuzz (issue 13): malformed frames on raw sockets, while well-behaved citizens keep writing.

    .venv/bin/python bench/ws_fuzz.py [--frames 1000] [--seed 7] [--keep]

Its own Synapse and bridge on loopback (bench/chaos_parts.py). The fuzzers speak WebSocket by hand over TCP
(aiohttp's client would refuse to send bad frames), from many loopback addresses, to real chats' sockets,
before and after a valid auth frame: text frames with bad UTF-8, reserved opcodes, RSV bits, unmasked client
frames, 64-bit declared lengths with a few bytes behind them, fragments never finished with control frames
between them, continuations with nothing to continue, control frames over 125 bytes, ping floods, close
frames with bad codes or a 1-byte body, garbage instead of the HTTP handshake, and well-formed frames of
hostile JSON. Every byte the bridge sends back is kept.

Meanwhile (and before, for the floor) well-behaved citizens send messages one at a time and time each ack.

Pass: the bridge process alive; every handshake upgraded (else the frames never reached the parser); its RSS
grew < 10 MB over the fuzz; no stack trace or Python exception name in anything sent to a fuzzer, and none
in the bridge's log; the well-behaved citizens' ack p99 < 500 ms during the fuzz — or, where the disk alone
keeps the floor's p99 above that (acks wait for fsync), within 1.5 times the floor's p99 of the same run.
Prints the figures (the floor's p50/p99 beside) and a JSON line; exits 1 on a miss.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402

from chaos_parts import Stack, log  # noqa: E402
from tests.support.visitor import Visitor  # noqa: E402

TRACE = re.compile(rb"Traceback|File \"/|\b[A-Z][A-Za-z]*(?:Error|Exception)\b|\bbridge\.[a-z_]+\.[a-z_]+")
RSS_LIMIT_KB = 10 * 1024
P99_LIMIT_MS = 500.0
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True,
          declared: int | None = None) -> bytes:
    """One WebSocket frame as a client writes it (masked), or as asked otherwise."""
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def auth(token: str) -> bytes:
    return frame(TEXT, json.dumps({"type": "auth", "token": token, "since": 0}).encode())


HOSTILE_JSON = [b"[" * 5000, b"{\"type\": \"message\", \"client_id\": [], \"body\": {}}", b"NaN",
                b"{\"type\": \"auth\", \"token\": null}", b"{\"type\": \"message\", \"client_id\": \"x\", \"body\": 1e999}",
                b"{\"type\": \"typing\", \"active\": \"yes\"}", b"{\"type\": \"\\ud800\"}", b"9" * 5000,
                b"{\"__proto__\": {\"type\": \"close\"}}", b"{\"type\": \"message\", \"since\": -1}", b"\"\"",
                b"{\"type\": \"read\", \"seq\": 99999999999999999999999}", b"{\"type\": \"message\", \"body\": \"\\u0000\"}"]


def cases(rng: random.Random) -> list[tuple[str, Callable[[], list[bytes]], bool]]:
    """(name, frames to send, whether to send a valid auth frame first)."""
    return [
        ("bad UTF-8 text", lambda: [frame(TEXT, b"\xff\xfe\xc3(" + os.urandom(8))], rng.random() < 0.5),
        ("reserved opcode", lambda: [frame(rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]), b"x")], rng.random() < 0.5),
        ("RSV bits set", lambda: [frame(TEXT, b"{}", rsv=rng.choice([1, 2, 4, 7]))], rng.random() < 0.5),
        ("unmasked client frame", lambda: [frame(TEXT, b"{\"type\":\"typing\"}", mask=False)], rng.random() < 0.5),
        ("huge 64-bit length", lambda: [frame(BINARY, b"abc", declared=2 ** 63 - 1)], rng.random() < 0.5),
        ("length beyond data", lambda: [frame(TEXT, b"{", declared=60000)], rng.random() < 0.5),
        ("fragments never finished", lambda: [frame(TEXT, b"{\"type\":", fin=False), frame(PING, b"p"),
                                              frame(CONT, b"\"typ", fin=False), frame(TEXT, b"{}")], True),
        ("continuation alone", lambda: [frame(CONT, b"abc")], rng.random() < 0.5),
        ("control frame over 125 bytes", lambda: [frame(PING, os.urandom(200))], rng.random() < 0.5),
        ("fragmented control frame", lambda: [frame(PING, b"x", fin=False)], rng.random() < 0.5),
        ("ping flood", lambda: [frame(PING, os.urandom(8)) for _ in range(50)], rng.random() < 0.5),
        ("bad close code", lambda: [frame(CLOSE, rng.choice([999, 1004, 1005, 1006, 2999, 5000]).to_bytes(2, "big"))],
         rng.random() < 0.5),
        ("1-byte close body", lambda: [frame(CLOSE, b"\x03")], rng.random() < 0.5),
        ("close with bad UTF-8 reason", lambda: [frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff\xfe")], True),
        ("hostile JSON", lambda: [frame(TEXT, rng.choice(HOSTILE_JSON)) for _ in range(3)], rng.random() < 0.5),
        ("binary garbage", lambda: [frame(BINARY, os.urandom(rng.randint(1, 4000)))], rng.random() < 0.5),
    ]


async def fuzz_one(host: str, port: int, path: str, origin: str, token: str | None, frames: list[bytes],
                   source: str, garbage: bool) -> tuple[bool, bytes]:
    """Connect from ``source``, (handshake | garbage), (auth,) frames: (upgraded to a WebSocket, all the bridge
    sent back)."""
    upgraded = False
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    got = b""
    try:
        if garbage:
            writer.write(os.urandom(300) + b"\r\n\r\n")
        else:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Origin: {origin}\r\n\r\n").encode())
            await writer.drain()
            got += await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if b" 101 " not in got.split(b"\r\n", 1)[0]:
                return False, got
            upgraded = True
            if token:
                writer.write(auth(token))
            for f in frames:
                writer.write(f)
        await writer.drain()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.05, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            got += chunk
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (ConnectionError, asyncio.TimeoutError):
            pass
    return upgraded, got


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))] if s else float("nan")


async def steady_citizens(base: str, stop: asyncio.Event, count: int, latencies: list[float]) -> None:
    """Well-behaved citizens: one message at a time, each ack timed."""
    visitors = [Visitor(base) for _ in range(count)]
    try:
        for v in visitors:
            await v.create(topic="general")
            await v.connect()

        async def talk(v: Visitor) -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                ack = await v.send(f"steady {uuid.uuid4().hex[:8]}")
                assert ack["type"] == "ack", ack
                latencies.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.2)
        await asyncio.gather(*(talk(v) for v in visitors))
    finally:
        await asyncio.gather(*(v.close() for v in visitors))


async def run(stack: Stack, frames_wanted: int, seed: int, floor_seconds: float) -> dict[str, Any]:
    rng = random.Random(seed)
    base = stack.public_url
    host, port = base.split("//")[1].split(":")[0], int(base.rsplit(":", 1)[1])
    pid = stack.bridge.pid
    assert pid is not None
    log_start = stack.bridge.log_path.stat().st_size

    floor: list[float] = []
    stop = asyncio.Event()
    steady = asyncio.create_task(steady_citizens(base, stop, 4, floor))
    await asyncio.sleep(floor_seconds)
    stop.set()
    await steady

    async with aiohttp.ClientSession() as http:             # the fuzzers' chats (their tokens, for post-auth cases)
        chats = []
        for _ in range(8):
            async with http.post(f"{base}/api/v1/chats", json={"topic": "general"}) as r:
                data = await r.json()
                chats.append((data["chat_id"], data["token"]))
    rss_before = rss_kb(pid)
    during: list[float] = []
    stop = asyncio.Event()
    steady = asyncio.create_task(steady_citizens(base, stop, 4, during))
    all_cases = cases(rng)
    sent, connections, upgraded, leaked = 0, 0, 0, []
    per_case: dict[str, int] = {}
    t0 = time.monotonic()

    async def one() -> None:
        nonlocal sent, connections, upgraded
        name, make, authed = rng.choice(all_cases + [("garbage before the handshake", lambda: [], False)])
        frames = make()
        chat_id, token = rng.choice(chats)
        source = f"127.0.{rng.randint(1, 250)}.{rng.randint(1, 250)}"
        ws, back = await fuzz_one(host, port, f"/api/v1/chats/{chat_id}/ws", base, token if authed else None,
                                  frames, source, name == "garbage before the handshake")
        sent += max(1, len(frames))
        connections += 1
        upgraded += ws
        per_case[name] = per_case.get(name, 0) + max(1, len(frames))
        if TRACE.search(back):
            leaked.append((name, back[:300]))

    while sent < frames_wanted:                                 # 16 connections at a time
        await asyncio.gather(*(one() for _ in range(16)))
    fuzz_seconds = time.monotonic() - t0
    await asyncio.sleep(1.0)                                   # the last sockets closed on the bridge's side too
    stop.set()
    await steady
    rss_after = rss_kb(pid)
    alive = stack.bridge.pid is not None
    with stack.bridge.log_path.open("rb") as f:
        f.seek(log_start)
        new_log = f.read()
    log_alarms = [line[:200] for line in new_log.splitlines() if b"Traceback" in line or b"unexpected error" in line]
    return {"frames": sent, "connections": connections, "upgraded": upgraded,
            "garbage": per_case.get("garbage before the handshake", 0), "seconds": round(fuzz_seconds, 1), "per_case": per_case,
            "alive": alive, "rss_before_kb": rss_before, "rss_after_kb": rss_after,
            "rss_growth_kb": rss_after - rss_before, "leaked": leaked, "log_alarms": log_alarms,
            "floor_p50_ms": round(pct(floor, 50), 1), "floor_p99_ms": round(pct(floor, 99), 1), "floor_n": len(floor),
            "during_p50_ms": round(pct(during, 50), 1), "during_p99_ms": round(pct(during, 99), 1),
            "during_n": len(during)}


def report(r: dict[str, Any]) -> bool:
    print(f"\nframes {r['frames']} on {r['connections']} connections in {r['seconds']} s")
    for name, n in sorted(r["per_case"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:34} {n:>5}")
    checks = [("bridge alive", r["alive"], ""),
              # Otherwise the frames never reached the WebSocket's parser (refused at the handshake): no fuzz.
              ("handshakes upgraded", r["upgraded"] == r["connections"] - r["garbage"],
               f"{r['upgraded']} of {r['connections'] - r['garbage']}"),
              ("RSS growth < 10 MB", r["rss_growth_kb"] < RSS_LIMIT_KB,
               f"{r['rss_before_kb'] / 1024:.1f} → {r['rss_after_kb'] / 1024:.1f} MB ({r['rss_growth_kb'] / 1024:+.1f})"),
              ("no stack trace to a client", not r["leaked"], f"{len(r['leaked'])} answers with one"),
              ("none in the bridge's log", not r["log_alarms"], f"{len(r['log_alarms'])} lines"),
              # The acks wait for the disk (fsync): on a busy disk the floor's own p99 can pass 500 ms, so the
              # fuzz is judged against the floor measured in the same run when the disk alone misses the target.
              ("citizens' ack p99 < 500 ms", r["during_p99_ms"] < P99_LIMIT_MS
               or r["during_p99_ms"] <= 1.5 * r["floor_p99_ms"],
               f"during p50/p99 {r['during_p50_ms']}/{r['during_p99_ms']} ms (n={r['during_n']}); floor "
               f"{r['floor_p50_ms']}/{r['floor_p99_ms']} ms (n={r['floor_n']}); p99 ratio "
               f"{r['during_p99_ms'] / r['floor_p99_ms']:.2f}" if r["floor_p99_ms"] else "")]
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:30} {detail}")
    for name, sample in r["leaked"][:5]:
        print(f"  leaked ({name}): {sample!r}")
    for line in r["log_alarms"][:5]:
        print(f"  log: {line!r}")
    ok = all(c[1] for c in checks)
    print(json.dumps({k: v for k, v in r.items() if k not in ("per_case", "leaked", "log_alarms")}
                     | {"leaked_n": len(r["leaked"]), "log_alarms_n": len(r["log_alarms"]), "pass": ok}))
    return ok


async def main_async(args: argparse.Namespace) -> int:
    # The steady citizens write 5 a second each: above the default per-chat rate (30 a minute), not the point here.
    stack = Stack.prepare(keep=args.keep, web={"chat_messages_per_minute": 600.0})
    try:
        stack.bridge.start()
        log(f"bridge up at {stack.public_url}; {args.frames} frames, seed {args.seed}")
        result = await run(stack, args.frames, args.seed, args.floor_seconds)
        return 0 if report(result) else 1
    finally:
        stack.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--floor-seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, store)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
