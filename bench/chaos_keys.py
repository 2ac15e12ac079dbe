"""Room-key chaos (issue 13): an officer's room key the bridge gets late, or gets while it is down; every
officer line must reach its citizen once, nothing may stay undecryptable, nobody may be asked to send it again
before the configured wait, and the citizen never sees ciphertext or an error.

    .venv/bin/python bench/chaos_keys.py --scenario outage-keys [--rounds 10] [--citizens 3]
    .venv/bin/python bench/chaos_keys.py --scenario late-key    [--rounds 10] [--citizens 3] [--late 2]

The set-up is bench/chaos_parts.py's: its own Synapse and bridge on loopback, two officers as real encrypted
matrix-nio clients of one agency in automatic routing, citizens over the visitor API as the page behaves.
Each chat is opened once; then ``--rounds`` rounds of the fault. Each scenario prints its criterion, a table of
figures and a last line of JSON, and exits 1 when the criterion is missed. Every process is stopped by PID.

outage-keys  Each round the bridge is stopped; each chat's officer signs in on a new device (a new device has
             its own room session: the room's session rotates) and writes from it; the bridge starts. Then the
             citizen writes a line and the new device one more. Criterion: every line each way delivered once,
             undecryptable after the restart 0, resend requests 0, no ciphertext or error at the citizen.
             Figure: bridge start → the outage line at its citizen.
late-key     Each round each chat's officer rotates its room session and sends a line while holding back the
             puppet's copy of the new key (olm.share_group_session_parallel wrapped); once the bridge has failed
             to decrypt it, ``--late`` s later the key is sent. Then, past the bridge's wait
             (crypto.undecryptable_wait_seconds), a next line. A last round holds one key back for good, to show
             the resend request comes, and only after the wait. Criterion: every line at its citizen once and
             in order, no resend request for a key that came late, the one for the key that never came not
             before the wait, no ciphertext or error at the citizen. Figure: key sent → line at the citizen.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import uuid
from typing import Any

import nio

from chaos_parts import (TOPIC, Citizen, Stack, conclude, log, new_pool, start_officers, until, wind_down)
from tests.support.bridge_db import rows

RESEND = "send it again"
DEADLINE = 120               # seconds to wait for anything owed


def first_failed(stack: Stack, event_id: str) -> int | None:
    """When (ms) the bridge first failed to decrypt this event; None: not yet tried, or decrypted at once."""
    found = rows(stack.db_path, "SELECT first_failed_ts FROM room_events WHERE event_id = ?", [event_id])
    return found[0][0] if found else None


def wrong_at_citizen(c: Citizen) -> int:
    """Frames that would show the citizen ciphertext or an error."""
    return sum(1 for f in c.frames if f.get("type") == "error" and f.get("error") != "rate_limited"
               or f.get("type") == "message" and (f.get("kind") == "encrypted"
                                                   or "error" in str(f.get("body", "")).lower()))


def resend_requests(officers: list, room: str) -> list[tuple[str, int]]:
    """(event ID, server ms) of every request to send a message again in this room, any device's view."""
    found = {m.event_id: int(m.source.get("origin_server_ts", 0)) for o in officers for m in o.messages
             if m.room_id == room and RESEND in m.body}
    return sorted(found.items())


def p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


async def open_chats(stack: Stack, pool, citizens: list[Citizen]):  # type: ignore[no-untyped-def]
    """Officers in; each citizen's chat opened and its first line read: chat → (officer, room, puppet)."""
    officers = await start_officers(pool, stack)
    chats = {}
    for c in citizens:
        await c.create(topic=TOPIC, display_name=f"Keys {c.index}")
        await c.connect()
        await c.say(f"c{c.index} m0")
    for c in citizens:
        def read() -> Any:
            return next(((o, m) for o in officers for m in o.messages if m.body == f"c{c.index} m0"), None)
        o, m = await until(read, DEADLINE, f"chat {c.index}'s first line at an officer")
        chats[c.index] = (o, m.room_id, m.sender)
    return officers, chats


async def outage_keys(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    stack.bridge.start()
    pool = new_pool(stack)
    citizens = [Citizen(stack.public_url, i) for i in range(args.citizens)]
    to_citizens: list[str] = []
    to_officers: list[str] = []
    key_to_delivery: list[float] = []
    try:
        officers, chats = await open_chats(stack, pool, citizens)
        writers = {i: o for i, (o, _, _) in chats.items()}
        aborted = None
        try:
            for r in range(args.rounds):
                log(f"round {r + 1}: the bridge stopped; new devices write")
                await asyncio.to_thread(stack.bridge.stop)
                outage_lines = {}
                for c in citizens:
                    o, room, _ = chats[c.index]
                    device = await pool.start(stack.synapse.url, o.client.user_id, f"r{r}c{c.index}",
                                              auto_claim=False)
                    await device.wait_member(room, 60)
                    body = f"o c{c.index} r{r} {uuid.uuid4().hex[:4]}"
                    await device.send(room, body)
                    writers[c.index] = device
                    outage_lines[c.index] = body
                    to_citizens.append(body)
                started = time.monotonic()
                await asyncio.to_thread(stack.bridge.start)
                for c in citizens:
                    await c.reconnect(timeout=DEADLINE)
                for c in citizens:
                    body = outage_lines[c.index]
                    await until(lambda: body in c.officer_bodies(), DEADLINE, f"{body!r} at its citizen")
                    key_to_delivery.append(time.monotonic() - started)
                for c in citizens:
                    o, room, _ = chats[c.index]
                    line = f"c{c.index} m{r + 1}"
                    await c.say(line)
                    to_officers.append(line)
                    after = f"a c{c.index} r{r}"
                    await writers[c.index].send(room, after)
                    to_citizens.append(after)
                everyone = pool.started
                await until(lambda: all(any(m.body == f"c{c.index} m{r + 1}" for o in everyone for m in o.messages)
                                        and f"a c{c.index} r{r}" in c.officer_bodies() for c in citizens),
                            DEADLINE, f"round {r + 1}'s lines each way")
        except AssertionError as e:     # a wait ran out: a miss, with the figures so far
            aborted = str(e)
        everyone = pool.started
        at_citizens = [b for c in citizens for b in c.officer_bodies()]
        at_officers = {m.event_id: m.body for o in everyone for m in o.messages}
        return {"scenario": "outage-keys", "aborted": aborted, "rounds": args.rounds, "citizens": args.citizens,
                "to_citizens": len(to_citizens), "to_officers": len(to_officers),
                "delivered_once_to_citizens": sum(1 for b in to_citizens if at_citizens.count(b) == 1),
                "delivered_once_to_officers": sum(1 for b in to_officers
                                                  if list(at_officers.values()).count(b) == 1),
                "undecryptable_at_end": sum(1 for b in to_citizens if b not in at_citizens),
                "resend_requests": sum(len(resend_requests(everyone, room)) for _, room, _ in chats.values()),
                "wrong_at_citizen": sum(wrong_at_citizen(c) for c in citizens),
                "key_to_delivery_p50_s": p(key_to_delivery, 0.5), "key_to_delivery_max_s": p(key_to_delivery, 1.0)}
    finally:
        await wind_down([], citizens, pool)


def withholding(officer, puppet: str, withheld: list) -> None:  # type: ignore[no-untyped-def]
    """From now on this officer's client leaves the puppet's copy of each new room key in ``withheld``."""
    olm = officer.client.olm
    shares = olm.share_group_session_parallel

    def holding_back(*args, **kwargs):  # type: ignore[no-untyped-def]
        for sharing_with, to_device in shares(*args, **kwargs):
            withheld.extend((puppet, device, content)
                            for device, content in to_device["messages"].get(puppet, {}).items())
            yield sharing_with, {"messages": {u: d for u, d in to_device["messages"].items() if u != puppet}}
    olm.share_group_session_parallel = holding_back


async def send_withholding(officer, room: str, puppet: str, body: str, withheld: list) -> str:  # type: ignore[no-untyped-def]
    """The officer writes ``body`` under a new room key whose puppet copy goes to ``withheld``; the event ID."""
    withholding(officer, puppet, withheld)
    try:
        officer.client.invalidate_outbound_session(room)
        return await officer.send(room, body)
    finally:
        del officer.client.olm.share_group_session_parallel


async def late_key(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    stack.bridge.start()
    wait_s = float(stack.config["crypto"]["undecryptable_wait_seconds"])
    pool = new_pool(stack)
    citizens = [Citizen(stack.public_url, i) for i in range(args.citizens)]
    written: dict[int, list[str]] = {c.index: [] for c in citizens}
    key_to_delivery: list[float] = []
    early_requests = 0
    try:
        officers, chats = await open_chats(stack, pool, citizens)
        aborted = None
        c, requests, failed_at, lost_body, never_from = citizens[0], [], 0, "", float("inf")
        try:
            for r in range(args.rounds):
                log(f"round {r + 1}: room keys held back, then sent {args.late} s after the bridge failed")
                for c in citizens:
                    o, room, puppet = chats[c.index]
                    withheld: list = []
                    body = f"late c{c.index} r{r}"
                    event_id = await send_withholding(o, room, puppet, body, withheld)
                    written[c.index].append(body)
                    if not withheld:
                        raise AssertionError("the puppet's copy of the room key was never made")
                    failed_at = await until(lambda: first_failed(stack, event_id), DEADLINE, "the bridge failing")
                    await asyncio.sleep(args.late)
                    sent_key = time.monotonic()
                    for user, device, content in withheld:
                        resp = await o.client.to_device(nio.ToDeviceMessage("m.room.encrypted", user, device, content))
                        if not isinstance(resp, nio.ToDeviceResponse):
                            raise AssertionError(f"the late key: {resp}")
                    await until(lambda: body in c.officer_bodies(), DEADLINE, f"{body!r} once its key came")
                    key_to_delivery.append(time.monotonic() - sent_key)
                    await until(lambda: time.time() * 1000 > failed_at + (wait_s + 1) * 1000, 60, "past the wait")
                    after = f"next c{c.index} r{r}"
                    await o.send(room, after)
                    written[c.index].append(after)
                    await until(lambda: after in c.officer_bodies(), DEADLINE, f"{after!r}")

            # The key that never comes: a request to send it again, and not before the wait.
            log("last round: one key held back for good")
            c = citizens[0]
            o, room, puppet = chats[c.index]
            lost_body = f"never c{c.index}"
            event_id = await send_withholding(o, room, puppet, lost_body, [])
            failed_at = never_from = await until(lambda: first_failed(stack, event_id), DEADLINE, "the bridge failing")
            requests = await until(lambda: [t for _, t in resend_requests(pool.started, room) if t >= failed_at],
                                   DEADLINE, "the request to send it again")
            o.client.invalidate_outbound_session(room)       # the next line under a key the bridge gets
            await o.send(room, f"after never c{c.index}")
            await until(lambda: f"after never c{c.index}" in c.officer_bodies(), DEADLINE, "the line after it")
            await asyncio.sleep(1)                           # a doubled frame would come with the line after it
        except AssertionError as e:     # a wait ran out: a miss, with the figures so far
            aborted = str(e)
        at = {c.index: c.officer_bodies() for c in citizens}
        early_requests = sum(1 for _, room, _ in chats.values() for _, t in resend_requests(pool.started, room)
                             if t < never_from)
        return {"scenario": "late-key", "aborted": aborted, "rounds": args.rounds, "citizens": args.citizens,
                "late_s": args.late, "wait_s": wait_s,
                "to_citizens": sum(len(w) for w in written.values()),
                "to_officers": len(citizens),
                "delivered_once_to_citizens": sum(1 for i, w in written.items() for b in w if at[i].count(b) == 1),
                "chats_out_of_order": sum(1 for i, w in written.items()
                                          if [b for b in at[i] if b in w] != w),
                "undecryptable_at_end": sum(1 for i, w in written.items() for b in w if b not in at[i]),
                "resend_requests": early_requests,
                "never_key_request_after_s": round((min(requests) - failed_at) / 1000, 2) if requests else None,
                "never_key_at_citizen": at[c.index].count(lost_body),
                "wrong_at_citizen": sum(wrong_at_citizen(c) for c in citizens),
                "key_to_delivery_p50_s": p(key_to_delivery, 0.5), "key_to_delivery_max_s": p(key_to_delivery, 1.0)}
    finally:
        await wind_down([], citizens, pool)


def verdict(r: dict[str, Any]) -> list[str]:
    missed = [f"stopped: {r['aborted']}"] if r["aborted"] else []
    if r["delivered_once_to_citizens"] != r["to_citizens"]:
        missed.append(f"{r['to_citizens'] - r['delivered_once_to_citizens']} officer lines not delivered once")
    if r.get("delivered_once_to_officers", r["to_officers"]) != r["to_officers"]:
        missed.append("citizen lines not delivered once")
    if r["undecryptable_at_end"]:
        missed.append(f"{r['undecryptable_at_end']} undecryptable at the end")
    if r["resend_requests"]:
        missed.append(f"{r['resend_requests']} requests to send again for keys that came")
    if r["wrong_at_citizen"]:
        missed.append(f"{r['wrong_at_citizen']} ciphertext or error frames at a citizen")
    if r.get("chats_out_of_order"):
        missed.append(f"{r['chats_out_of_order']} chats out of order")
    if "never_key_request_after_s" in r and r["never_key_request_after_s"] is None:
        missed.append("no request to send again for the key that never came")
    elif "never_key_request_after_s" in r and r["never_key_request_after_s"] < r["wait_s"]:
        missed.append(f"asked to resend after {r['never_key_request_after_s']} s, before the {r['wait_s']} s wait")
    if r.get("never_key_at_citizen"):
        missed.append("the never-decrypted line reached the citizen")
    return missed


CRITERIA = {
    "outage-keys": "every line each way delivered once; undecryptable after the restart 0; resend requests 0; "
                   "no ciphertext or error at the citizen",
    "late-key": "every line at its citizen once, in order; no resend request for a late key; the request for a "
                "key that never came not before the wait; no ciphertext or error at the citizen",
}


def show(r: dict[str, Any]) -> None:
    print(f"scenario {r['scenario']}: criterion: {CRITERIA[r['scenario']]}")
    rows_ = [("rounds", r["rounds"]), ("chats", r["citizens"]),
             ("officer lines written", r["to_citizens"]), ("citizen lines written", r["to_officers"]),
             ("delivered once at citizens", r["delivered_once_to_citizens"]),
             ("undecryptable at the end", r["undecryptable_at_end"]),
             ("resend requests (key came)", r["resend_requests"]),
             ("ciphertext/error at citizen", r["wrong_at_citizen"]),
             ("key → delivery p50 s", r["key_to_delivery_p50_s"]),
             ("key → delivery max s", r["key_to_delivery_max_s"])]
    if "never_key_request_after_s" in r:
        rows_.append(("never-key request after s", f"{r['never_key_request_after_s']} (wait {r['wait_s']})"))
    for name, value in rows_:
        print(f"  {name:<30}{value}")


SCENARIOS = {"outage-keys": outage_keys, "late-key": late_key}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=SCENARIOS, required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--citizens", type=int, default=3)
    ap.add_argument("--late", type=float, default=2.0, help="late-key: seconds after the bridge failed")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, databases)")
    args = ap.parse_args()
    if args.rounds < 1 or args.citizens < 1 or args.late < 0:
        ap.error("counts must be positive")
    logging.getLogger("nio").setLevel(logging.ERROR)
    stack = Stack.prepare(keep=args.keep)
    try:
        log(f"run directory {stack.dir}; scenario {args.scenario}")
        result = asyncio.run(SCENARIOS[args.scenario](stack, args))
    finally:
        stack.close()
    return conclude(result, verdict, show)


if __name__ == "__main__":
    sys.exit(main())
