"""Disk full (issue 13, chaos): the file system the bridge's store lives on fills up in the middle of a
conversation, stays full for a while, and gets its space back.

    .venv/bin/python bench/chaos_disk_full.py [--citizens 3] [--messages 4] [--full-seconds 10] [--size-mb 32] [--keep]

Needs root: the store and the crypto stores are put on a small tmpfs of their own (``mount -t tmpfs``), the
real file system filling, not a simulation. Its own Synapse and the real bridge on loopback, two officers as
real encrypted matrix-nio clients answering every citizen message, citizens over the visitor API. Phases:

1. before: each citizen writes ``--messages`` lines and gets each answered;
2. full: a file fills the tmpfs to its last byte; each citizen goes on writing (a line every 0.3 s for
   ``--full-seconds``) and a new citizen tries to open a chat;
3. after: the file is removed; nobody touches the bridge; each citizen writes ``--messages`` more lines.

Pass criteria, each checked, the run failing (exit 1) if one is missed:
- while full, lines are refused with an ``error`` frame ``store_full`` (never ``internal_error`` or ``busy``;
  a line may still be acknowledged while SQLite writes into WAL space the file already has — it is then
  stored and must be delivered like any other), a new chat with HTTP 503 ``store_full``, and ``/health``
  answers 503 ``store_full``;
  nothing the bridge sent any client holds a stack trace; the bridge process stays up;
- nothing half-written: no line refused while full is in the store, and ``PRAGMA integrity_check`` of the
  store and each crypto store is "ok" at the end;
- nothing acknowledged lost: every acknowledged line is in the store and was read by an officer;
- the bridge recovers by itself: ``/health`` is 200 again, a new chat opens, and every line written after the
  space came back is acknowledged, read by an officer and answered to the citizen.
Figures: lines acknowledged / refused per phase, space back → /health ok and → first delivery. The last line is
JSON for scripts and the ``make test`` guard. Every process it starts is stopped by PID in a ``finally``, and
the tmpfs is unmounted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from chaos_parts import (REPLY, TOPIC, Citizen, Stack, answer_everything, citizen_lines, log, new_pool,
                         start_officers, until, wind_down)
from tests.support.disk import fill  # noqa: E402   (on the path chaos_parts put there)

DISK = "disk"                               # the tmpfs, inside the run's directory


def health(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            return r.status, json.loads(r.read()).get("status", "")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}").get("status", "")


async def line(c: Citizen, body: str, timeout: float = 60) -> dict[str, Any]:
    """Send one line; its answer (the ack or the error frame that names its client ID)."""
    client_id = uuid.uuid4().hex
    c.sent[client_id] = body
    await c.send(body, client_id=client_id, wait_ack=False)
    return await c.wait_frame(lambda f: f.get("client_id") == client_id and f.get("type") in ("ack", "error"),
                              timeout, f"the answer to {body!r}")


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    url = stack.public_url
    await asyncio.to_thread(stack.bridge.start)
    pool = new_pool(stack)
    officers = await start_officers(pool, stack)
    seen: set[str] = set()
    replied: list[tuple[int, int]] = []
    repliers = [asyncio.create_task(answer_everything(o, seen, replied, {})) for o in officers]
    citizens = [Citizen(url, i) for i in range(args.citizens)]
    answers: dict[str, list[dict[str, Any]]] = {"before": [], "full": [], "after": []}
    result: dict[str, Any] = {}
    try:
        for c in citizens:
            await c.create(topic=TOPIC, display_name=f"Full {c.index}")
            await c.connect()
        count = {c.index: 0 for c in citizens}

        async def write(c: Citizen, phase: str) -> None:
            answers[phase].append(await line(c, f"c{c.index} m{count[c.index]}"))
            count[c.index] += 1

        for _ in range(args.messages):
            for c in citizens:
                await write(c, "before")
        await until(lambda: len(replied) >= len(answers["before"]), 120, "the answers before the disk fills")

        log("filling the store's file system")
        filler = await asyncio.to_thread(fill, stack.dir / DISK)
        full_health: list[tuple[int, str]] = []
        newcomer = Citizen(url, 99)
        try:
            ends = time.monotonic() + args.full_seconds
            while time.monotonic() < ends:
                for c in citizens:
                    await write(c, "full")
                full_health.append(await asyncio.to_thread(health, url))
                await asyncio.sleep(0.3)
            async with newcomer.session.post(url + "/api/v1/chats", json={"topic": TOPIC}) as r:
                new_chat_full = (r.status, (await r.json(content_type=None)))
        finally:
            await newcomer.close()
        alive = stack.bridge.pid is not None

        log("space back")
        filler.unlink()
        back = time.monotonic()
        await until(lambda: health(url)[0] == 200, 120, "/health ok after the space came back", interval=0.2)
        health_back = time.monotonic() - back
        delivered_before = len(replied)
        after_from = dict(count)
        for _ in range(args.messages):
            for c in citizens:
                await write(c, "after")
        first_after = None
        try:
            await until(lambda: len(replied) > delivered_before, 120, "a delivery after the space came back")
            first_after = time.monotonic() - back
        except AssertionError:
            pass
        newcomer = Citizen(url, 98)
        try:
            await newcomer.create(topic=TOPIC, display_name="After")
            new_chat_after = 201
        except AssertionError:
            new_chat_after = None
        finally:
            await newcomer.close()

        acked = {f["client_id"] for c in citizens for f in c.frames if f.get("type") == "ack"}
        want_read = {c.sent[k] for c in citizens for k in c.sent if k in acked}

        def read_by_officers() -> set[str]:
            return {f"c{i} m{k}" for _, (i, k) in citizen_lines(officers).values()}

        def answered() -> set[str]:
            return {b[len(REPLY):] for c in citizens for b in c.officer_bodies() if b.startswith(REPLY)}
        try:
            await until(lambda: want_read <= read_by_officers() and want_read <= answered(), 120,
                        "every acknowledged line read and answered")
        except AssertionError:
            pass
        refused_full = [(c.sent[a["client_id"]], a) for c in citizens for a in answers["full"]
                        if a["type"] == "error" and a["client_id"] in c.sent]
        conn = sqlite3.connect(f"file:{stack.dir / DISK / 'precinct.db'}?mode=ro", uri=True)
        try:
            stored = {row[0] for row in conn.execute("SELECT body FROM messages WHERE sender_kind = 'visitor'")}
        finally:
            conn.close()
        frames = [f for c in citizens for f in c.frames]
        result = {
            "acked": {p: sum(1 for a in answers[p] if a["type"] == "ack") for p in answers},
            "refused": {p: sorted({a.get("error") for a in answers[p] if a["type"] == "error"}) for p in answers},
            "lines": {p: len(answers[p]) for p in answers},
            "health_while_full": sorted({f"{s} {w}" for s, w in full_health}),
            "new_chat_while_full": f"{new_chat_full[0]} {new_chat_full[1].get('error')}",
            "new_chat_after": new_chat_after,
            "bridge_alive_while_full": alive,
            "refused_but_stored": sorted(body for body, _ in refused_full if body in stored),
            "acked_not_stored": sorted(want_read - stored),
            "acked_not_read_by_officers": sorted(want_read - read_by_officers()),
            "acked_not_answered": sorted(want_read - answered()),
            "stack_traces_to_clients": sum(1 for f in frames if "Traceback" in json.dumps(f))
                                        + ("Traceback" in json.dumps(new_chat_full[1])),
            "space_back_to_health_ok_s": round(health_back, 2),
            "space_back_to_first_delivery_s": round(first_after, 2) if first_after is not None else None,
        }
        return result
    finally:
        await wind_down(repliers, citizens, pool)


def integrity_all(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*.db")):
        conn = sqlite3.connect(path)
        try:
            out[str(path.relative_to(folder))] = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))[:200]
        finally:
            conn.close()
    return out


def verdicts(r: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, bool]]:
    n = args.citizens * args.messages
    return [
        ("before: every line acknowledged", r["acked"]["before"] == n),
        ("full: lines refused with store_full (or acknowledged while the WAL's own space lasted)",
         r["acked"]["full"] < r["lines"]["full"] and r["refused"]["full"] == ["store_full"]),
        ("full: new chat 503 store_full", r["new_chat_while_full"] == "503 store_full"),
        ("full: /health 503 store_full", r["health_while_full"] == ["503 store_full"]),
        ("full: bridge alive, no stack trace to a client", r["bridge_alive_while_full"]
         and r["stack_traces_to_clients"] == 0),
        ("nothing half-written: refused lines not stored, integrity ok",
         not r["refused_but_stored"] and all(v == "ok" for v in r["integrity"].values())),
        ("nothing acknowledged lost (stored, read by an officer, answered)",
         not r["acked_not_stored"] and not r["acked_not_read_by_officers"] and not r["acked_not_answered"]),
        ("recovered by itself: /health ok, new chat opens, every line after acknowledged",
         r["new_chat_after"] == 201 and r["acked"]["after"] == n),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=3)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--full-seconds", type=float, default=10)
    parser.add_argument("--size-mb", type=int, default=32)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stack = Stack.prepare(keep=args.keep, store={"path": f"{DISK}/precinct.db", "crypto_dir": f"{DISK}/crypto"})
    disk = stack.dir / DISK
    mounted = False
    try:
        disk.mkdir(mode=0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m,mode=0700", "tmpfs", str(disk)],
                       check=True, capture_output=True, timeout=30)
        mounted = True
        result = asyncio.run(run(stack, args))
        stack.bridge.stop()
        result["integrity"] = integrity_all(disk)
    finally:
        stack.bridge.stop()
        if mounted:
            if args.keep:
                subprocess.run(["cp", "-a", str(disk), str(stack.dir / "disk-copy")], timeout=60)
            subprocess.run(["umount", str(disk)], timeout=60)
        stack.close()
        if args.keep:
            log("kept:", stack.dir)
    print()
    for name, ok in verdicts(result, args):
        print(f"{'met   ' if ok else 'MISSED'} {name}")
    print(f"lines acknowledged / refused: before {result['acked']['before']}/{result['lines']['before']}, "
          f"while full {result['acked']['full']}/{result['lines']['full']} ({', '.join(result['refused']['full'])}), "
          f"after {result['acked']['after']}/{result['lines']['after']}")
    print(f"space back → /health ok {result['space_back_to_health_ok_s']} s, → first delivery "
          f"{result['space_back_to_first_delivery_s']} s")
    print(json.dumps(result))
    return 0 if all(ok for _, ok in verdicts(result, args)) else 1


if __name__ == "__main__":
    sys.exit(main())
