"""Homeserver chaos (issue 13): the homeserver restarted under traffic, a long bridge outage, and the bridge
started before its homeserver; nothing either side wrote may be lost, doubled or reordered.

    .venv/bin/python bench/chaos_homeserver.py --scenario restart     [--citizens 4] [--down 60] [--rate 2]
                                                                      [--element-officers 1]
    .venv/bin/python bench/chaos_homeserver.py --scenario outage      [--citizens 3] [--down 600] [--every 10]
    .venv/bin/python bench/chaos_homeserver.py --scenario cold-start  [--citizens 4] [--down 60] [--messages 4]

The kill loop's set-up (bench/chaos_parts.py): its own Synapse and bridge on loopback, two officers as real
encrypted clients of one agency in automatic routing (in the restart, one of them on matrix-js-sdk with its Rust
crypto, Element's stack, by default; elsewhere matrix-nio), each answering every citizen line it reads
("re: cN mK"), and citizens over the visitor API as the page behaves (one message at a time; after a reconnect,
every unacknowledged one again with its client ID). Lost, doubled and reordered are counted by unique body from
each client's own view, never from the bridge's store. Each scenario prints its criterion, a table of figures
and a last line of JSON, and exits 1 when a criterion is missed. Every process is stopped by PID.

restart      Synapse is stopped for ``--down`` s while the citizens write ``--rate`` messages a second between
             them (``--before`` s before, ``--after`` s after). Criterion: lost 0, doubled 0, order kept each way;
             every message acknowledged meanwhile (the store has it); /health says homeserver_unreachable while
             it is down and ok after. Figures: longest delivery delay each way, Synapse back → backlog drained.
outage       The bridge is killed (SIGKILL) and stays down ``--down`` s while each chat's officer writes a line
             every ``--every`` s; then it starts. Criterion: every line at its citizen once and in order.
             Figure: bridge start → last backlog line at the citizen; with ``--compare`` a second outage of the
             same length with the bridge's start-up ping turned off (homeserver.ping_at_start), and Synapse's
             own next retry read from its log, so the ping's worth is printed beside it.
cold-start   The bridge starts with Synapse down for ``--down`` s: the page is served, citizens open chats and
             write ``--messages`` lines each (acknowledged), /health says homeserver_unreachable; then Synapse
             starts and the officers sign in. Criterion: lost 0, doubled 0, order kept each way, /health 503
             before and ok after. Figures: Synapse up → /health ok, → last early line at an officer.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import re
import statistics
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

import aiohttp

from chaos_parts import (EMERGENCY_WORD, REPLY, TOPIC, Citizen, ElementOfficer, Stack, answer_everything, both_ways,
                         conclude, held_by_homeserver, log, met, new_pool, officers_view, print_ways, read_back_events,
                         start_officers, until, wind_down)

DRAIN_SECONDS = 180          # after the fault ends, the longest wait for what is still owed
HEALTH_NOTICES_WITHIN = 7.0  # the bridge asks the homeserver every 5 s while it answers; /health is polled every 1 s
OFFICER_RETRY_SECONDS = 2.0  # officers' clients try a lost homeserver again within this (as Element's keep-alive)


class Watch:
    """Who saw what when (monotonic), polled every 50 ms from the clients' own lists; and /health's answers."""

    def __init__(self, stack: Stack, officers: list, citizens: list[Citizen]) -> None:
        self.stack, self.officers, self.citizens = stack, officers, citizens
        self.at_officer: dict[str, float] = {}          # body → first read by an officer
        self.at_citizen: dict[str, float] = {}          # officer body → first at a citizen
        self.health: list[tuple[float, str]] = []       # (when, status)
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._clients()), asyncio.create_task(self._health())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _clients(self) -> None:
        while True:
            now = time.monotonic()
            for o in self.officers:
                for m in list(o.messages):
                    self.at_officer.setdefault(m.body, now)
            for c in self.citizens:
                for body in c.officer_bodies():
                    self.at_citizen.setdefault(body, now)
            await asyncio.sleep(0.05)

    async def _health(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(self.stack.public_url + "/health",
                                        timeout=aiohttp.ClientTimeout(total=5)) as r:
                        status = (await r.json()).get("status", str(r.status))
                except Exception as e:
                    status = f"no answer ({type(e).__name__})"
                self.health.append((time.monotonic(), status))
                await asyncio.sleep(1)

    def health_between(self, start: float, end: float) -> dict[str, int]:
        return dict(Counter(s for t, s in self.health if start <= t <= end))

    def first_ok_after(self, t0: float) -> float | None:
        return next((t - t0 for t, s in self.health if t >= t0 and s == "ok"), None)


def seconds(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


async def wait_owed(what: str, owed, timeout: float = DRAIN_SECONDS,  # type: ignore[no-untyped-def]
                    officers: list = ()) -> bool:  # type: ignore[assignment]
    """Until ``owed()`` is empty (bounded); False and a log line (with what each officer holds) if it is not."""
    try:
        await until(lambda: not owed(), timeout, what)
        return True
    except AssertionError:
        log(f"still owed after {timeout} s ({what}):", sorted(owed())[:20])
        for o in officers:
            log(o.state_report())
        return False


def faster_officer_retries(officers: list) -> None:
    """nio waits up to a minute between tries of a homeserver it lost; Element checks every few seconds. The
    delays measured here are the bridge's and Synapse's, not the test client's back-off."""
    for o in officers:
        if not isinstance(o, ElementOfficer):   # matrix-js-sdk's own keep-alive already checks every few seconds
            o.client.config = dataclasses.replace(o.client.config, max_timeout_retry_wait_time=OFFICER_RETRY_SECONDS)


# ---- homeserver restart under traffic -------------------------------------------------------------------
async def restart(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    stack.bridge.start()
    pool = new_pool(stack)
    seen: set[str] = set()
    replied: list[tuple[int, int]] = []
    reply_events: dict[tuple[int, int], str] = {}
    # One more citizen opens a chat while Synapse is down: its set-up, routing and dispatch notice wait for it.
    citizens = [Citizen(stack.public_url, i) for i in range(args.citizens + 1)]
    newcomer = citizens[-1]
    watch = Watch(stack, [], citizens)
    repliers: list[asyncio.Task] = []
    said: dict[str, tuple[float, float]] = {}        # body → (written, acknowledged)
    sent_by: dict[str, str] = {}                     # reply event ID → officer
    try:
        officers = watch.officers = await start_officers(pool, stack, element=args.element_officers)
        faster_officer_retries(officers)
        repliers = [asyncio.create_task(answer_everything(o, seen, replied, reply_events, sent_by=sent_by))
                    for o in officers]
        for c in citizens[:-1]:
            await c.create(topic=TOPIC, display_name=f"Chaos {c.index}")
            await c.connect()
        watch.start()
        start = time.monotonic()
        total = args.before + args.down + args.after
        newcomer_chat: list[int] = []
        gap = args.citizens / args.rate                 # each citizen's pace, so that together they write --rate/s

        async def talk(c: Citizen) -> int:
            k = 0
            if c is newcomer:
                await asyncio.sleep(args.before + min(10.0, args.down / 3))
                number = (await c.create(topic=TOPIC, display_name="Chaos newcomer"))["number"]
                newcomer_chat.append(number)
                await c.connect()
                await c.say(f"someone outside has a {EMERGENCY_WORD}")     # an alert while Synapse is down
            await asyncio.sleep(gap * c.index / args.citizens)     # spread out
            while time.monotonic() - start < total:
                body, written = f"c{c.index} m{k}", time.monotonic()
                await c.say(body)
                said[body] = (written, time.monotonic())
                k += 1
                await asyncio.sleep(max(0.0, written + gap - time.monotonic()))
            return k

        talking = asyncio.gather(*(talk(c) for c in citizens))
        await asyncio.sleep(args.before)
        down = time.monotonic()
        log(f"stopping Synapse for {args.down} s")
        await asyncio.to_thread(stack.synapse.stop)
        await asyncio.sleep(max(0.0, down + args.down - time.monotonic()))
        log("starting Synapse again")
        await asyncio.to_thread(stack.synapse.start)
        back = time.monotonic()
        log(f"Synapse answers again ({back - down:.1f} s after the stop)")
        counts = await talking
        sent = {(c.index, k) for c in citizens for k in range(counts[c.index])}

        def owed() -> set[str]:
            return ({f"c{i} m{k}" for i, k in sent} - set(watch.at_officer)) | \
                   ({f"{REPLY}c{i} m{k}" for i, k in sent} - set(watch.at_citizen))
        await wait_owed("the last deliveries", owed, officers=officers)

        def noticed() -> bool:
            return any(f"Chat {newcomer_chat[0]} ·" in m.body for o in officers for m in o.messages)

        def alerted() -> bool:
            return any(f"Emergency in chat {newcomer_chat[0]}" in m.body for o in officers for m in o.messages)
        try:                                            # its dispatch notice (automatic routing posts one too)
            await until(lambda: noticed() and alerted(), 60, "the dispatch notice and emergency alert of the "
                        "chat opened while Synapse was down")
        except AssertionError:
            log("dispatch notice / emergency alert of the chat opened while Synapse was down:", noticed(), alerted())
        await asyncio.sleep(1.5)                        # /health's next answers, after the drain
        ways = both_ways(officers, citizens, sent, replied)       # every reply in the order check, read back or not
        read_back = read_back_events(stack.bridge)
        ways["to_citizens"]["read_back"] = sorted(f"c{i} m{k}" for (i, k), e in reply_events.items() if e in read_back)
        held = held_by_homeserver(stack.hs_db, stack.as_id)
        ways["to_citizens"]["held_by_homeserver"] = sorted(
            f"c{i} m{k}" for i, k in ways["to_citizens"]["_lost"] if reply_events.get((i, k)) in held)
        for r in ways.values():
            r.pop("_lost")
        to_officer = [watch.at_officer[b] - w for b, (w, _) in said.items() if b in watch.at_officer]
        to_citizen = [watch.at_citizen[REPLY + b] - watch.at_officer[b] for b in said
                      if REPLY + b in watch.at_citizen and b in watch.at_officer]
        during = [b for b, (w, _) in said.items() if down <= w < back]
        acks_during = [a - w for b, (w, a) in said.items() if down <= w < back]
        backlog_officer = [watch.at_officer[b] - back for b in during if b in watch.at_officer]
        backlog_citizen = [watch.at_citizen[REPLY + b] - back for b in during if REPLY + b in watch.at_citizen]
        return {"scenario": "restart", "citizens": args.citizens, "rate_per_s": args.rate, "down_s": round(back - down, 1),
                **ways, "officers": officers_view(officers, reply_events, sent_by),
                "newcomer_dispatch_notice": noticed(), "newcomer_emergency_alert": alerted(),
                "written_while_down": len(during), "refused_as_too_fast": sum(c.rate_limited for c in citizens),
                "ack_while_down_s": {"p50": seconds(statistics.median(acks_during)) if acks_during else None,
                                     "max": seconds(max(acks_during, default=None))},
                "longest_delay_s": {"to_officers": seconds(max(to_officer, default=None)),
                                    "to_citizens": seconds(max(to_citizen, default=None))},
                "drain_after_back_s": {"to_officers": seconds(max(backlog_officer, default=None)),
                                       "replies_to_citizens": seconds(max(backlog_citizen, default=None))},
                "health_while_down": watch.health_between(down + HEALTH_NOTICES_WITHIN, back),
                "health_ok_after_back_s": seconds(watch.first_ok_after(back)),
                "took_s": round(time.monotonic() - start, 1)}
    finally:
        await watch.stop()
        await wind_down(repliers, citizens, pool)


def restart_verdict(r: dict[str, Any]) -> list[str]:
    missed = []
    for way in ("to_officers", "to_citizens"):
        if not met(r[way], len(r[way].get("held_by_homeserver", []))):
            missed.append(way)
    if not r["newcomer_dispatch_notice"]:
        missed.append("no dispatch notice of the chat opened while Synapse was down")
    if not r["newcomer_emergency_alert"]:
        missed.append("no emergency alert of the chat opened while Synapse was down")
    if not r["written_while_down"]:
        missed.append("nothing written while Synapse was down")
    if set(r["health_while_down"]) != {"homeserver_unreachable"}:
        missed.append(f"/health while down: {r['health_while_down']}")
    if r["health_ok_after_back_s"] is None:
        missed.append("/health never ok after Synapse came back")
    return missed


def print_restart(r: dict[str, Any]) -> None:
    print(f"Homeserver restart under traffic — {r['citizens']} citizens (+1 opening a chat while it is down) writing {r['rate_per_s']} messages/s between "
          f"them, 2 officers replying; Synapse down {r['down_s']} s; {r['took_s']} s")
    print_ways((("citizen → officer", r["to_officers"]), ("officer → citizen", r["to_citizens"])))
    for o in r["officers"]:
        print(f"  {o['officer']} ({o['client']}): read {o['read']} citizen lines, sent {o['replied']} replies")
    if r["to_citizens"].get("held_by_homeserver"):
        print(f"  held unsent by Synapse (docs/reliability.md): {', '.join(r['to_citizens']['held_by_homeserver'])}")
    d, b, a = r["longest_delay_s"], r["drain_after_back_s"], r["ack_while_down_s"]
    print(f"written while Synapse was down: {r['written_while_down']}, each acknowledged (p50 {a['p50']} s, "
          f"max {a['max']} s); refused as too fast and sent again after retry_after: {r['refused_as_too_fast']}")
    print(f"a chat opened while Synapse was down: set up and answered; dispatch notice "
          f"{'posted' if r['newcomer_dispatch_notice'] else 'MISSING'}, emergency alert (raised while down) "
          f"{'posted' if r['newcomer_emergency_alert'] else 'MISSING'}")
    print(f"longest delivery delay: citizen → officer {d['to_officers']} s, officer's reply → citizen "
          f"{d['to_citizens']} s")
    print(f"Synapse back → backlog drained: last line at an officer {b['to_officers']} s, last reply to it at its "
          f"citizen {b['replies_to_citizens']} s")
    print(f"/health while Synapse was down: {r['health_while_down']}; ok {r['health_ok_after_back_s']} s after it "
          f"was back")


# ---- long bridge outage ---------------------------------------------------------------------------------
async def outage(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    stack.bridge.start()
    pool = new_pool(stack)
    seen: set[str] = set()
    replied: list[tuple[int, int]] = []
    citizens = [Citizen(stack.public_url, i) for i in range(args.citizens)]
    watch = Watch(stack, [], citizens)
    repliers: list[asyncio.Task] = []
    rounds: list[dict[str, Any]] = []
    try:
        officers = watch.officers = await start_officers(pool, stack)
        repliers = [asyncio.create_task(answer_everything(o, seen, replied, {})) for o in officers]
        for c in citizens:
            await c.create(topic=TOPIC, display_name=f"Chaos {c.index}")
            await c.connect()
        watch.start()
        for c in citizens:
            await c.say(f"c{c.index} m0")
        # Each chat's room and officer: where its first line was read (automatic routing chose the officer).
        await until(lambda: all(f"{REPLY}c{c.index} m0" in watch.at_citizen for c in citizens), 120,
                    "every chat answered once before the outage")
        rooms = {}
        for c in citizens:
            o, m = next((o, m) for o in officers for m in o.messages if m.body == f"c{c.index} m0")
            rooms[c.index] = (o, m.room_id)
        plans = [("with the start-up ping", True)] + ([("without it", False)] if args.compare else [])
        for n, (name, ping) in enumerate(plans):
            rounds.append(await one_outage(stack, args, citizens, rooms, watch, n, name, ping))
        return {"scenario": "outage", "citizens": args.citizens, "down_s": args.down, "every_s": args.every,
                "rounds": rounds}
    finally:
        await watch.stop()
        await wind_down(repliers, citizens, pool)


def synapse_next_retry(stack: Stack, after_wall: float) -> float | None:
    """When Synapse itself would next have tried the bridge (its recoverer's "Scheduling retries on … in Ns",
    the last one scheduled before ``after_wall``), in wall-clock seconds; None if its log does not say."""
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*Scheduling retries on "
                         + re.escape(stack.as_id) + r" in ([\d.]+)s")
    best = None
    for line in stack.synapse.log_path.read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if m:
            at = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(m[2]) / 1000
            if at <= after_wall:
                best = at + float(m[3])
    return best


async def one_outage(stack: Stack, args: argparse.Namespace, citizens: list[Citizen],
                     rooms: dict[int, tuple[Any, str]], watch: Watch, n: int, name: str, ping: bool) -> dict[str, Any]:
    """The bridge killed for ``args.down`` s while each chat's officer writes; then started (its ping on or off)."""
    log(f"outage {n + 1} ({name}): the bridge killed for {args.down} s")
    await asyncio.to_thread(stack.bridge.kill9)
    written: dict[int, list[str]] = {c.index: [] for c in citizens}
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < args.down:
        for c in citizens:
            officer, room = rooms[c.index]
            body = f"o{n} c{c.index} n{k}"
            await officer.send(room, body)
            written[c.index].append(body)
        k += 1
        await asyncio.sleep(max(0.0, start + k * args.every - time.monotonic()))
    await asyncio.sleep(max(0.0, start + args.down - time.monotonic()))
    wall, started = time.time(), time.monotonic()
    env = None if ping else {"PRECINCT_HOMESERVER__PING_AT_START": "false"}
    await asyncio.to_thread(stack.bridge.start, env=env)
    healthy = time.monotonic() - started
    next_retry = synapse_next_retry(stack, wall)
    for c in citizens:
        asyncio.ensure_future(c.reconnect(timeout=120))
    backlog = {b for bodies in written.values() for b in bodies}
    drained = await wait_owed(f"outage {n + 1}'s backlog at the citizens", lambda: backlog - set(watch.at_citizen),
                              max(DRAIN_SECONDS, (next_retry or 0) - wall + 60))
    lost = sum(1 for b in backlog if b not in watch.at_citizen)
    doubled = sum(max(0, sum(1 for x in c.officer_bodies() if x == b) - 1) for c in citizens for b in written[c.index])
    out_of_order = sum(1 for c in citizens if not order_kept(c.officer_bodies(), written[c.index]))
    arrived = [watch.at_citizen[b] for b in backlog if b in watch.at_citizen]
    first = [watch.at_citizen[w[0]] for w in written.values() if w and w[0] in watch.at_citizen]
    return {"name": name, "ping": ping, "written": len(backlog), "lost": lost, "duplicated": doubled,
            "chats_out_of_order": out_of_order, "drained": drained,
            "start_to_health_ok_s": seconds(healthy),
            "start_to_first_backlog_s": seconds(min(first) - started if first else None),
            "recovery_s": seconds(max(arrived) - started if arrived and not lost else None),
            "synapse_own_retry_after_start_s": seconds(next_retry - wall if next_retry else None)}


def order_kept(got: list[str], written: list[str]) -> bool:
    """The written lines that arrived came in the order written, each once."""
    mine = [x for x in got if x in set(written)]
    return mine == [w for w in written if w in set(mine)]


def outage_verdict(r: dict[str, Any]) -> list[str]:
    return [f"outage {n + 1} ({o['name']}): lost {o['lost']}, doubled {o['duplicated']}, "
            f"out of order {o['chats_out_of_order']}"
            for n, o in enumerate(r["rounds"]) if o["lost"] or o["duplicated"] or o["chats_out_of_order"]]


def print_outage(r: dict[str, Any]) -> None:
    print(f"Long bridge outage — {r['citizens']} chats, the bridge down {r['down_s']} s (SIGKILL) while each chat's "
          f"officer writes a line every {r['every_s']} s")
    print(f"{'bridge start':<24}{'written':>8}{'lost':>6}{'doubled':>9}{'out of order':>14}"
          f"{'/health ok':>12}{'first line':>12}{'recovery':>10}{'Synapse own retry':>19}")
    for o in r["rounds"]:
        print(f"{o['name']:<24}{o['written']:>8}{o['lost']:>6}{o['duplicated']:>9}{o['chats_out_of_order']:>14}"
              f"{str(o['start_to_health_ok_s']) + ' s':>12}{str(o['start_to_first_backlog_s']) + ' s':>12}"
              f"{str(o['recovery_s']) + ' s':>10}{str(o['synapse_own_retry_after_start_s']) + ' s':>19}")
    print("recovery: bridge start → the last backlog line at its citizen; Synapse own retry: when Synapse's back-off "
          "would have sent the backlog by itself (from its log), after the bridge's start")
    print("criterion: every line the officers wrote during the outage at its citizen once and in order")


# ---- homeserver unreachable at start --------------------------------------------------------------------
async def cold_start(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    await asyncio.to_thread(stack.synapse.stop)      # it has the officers' accounts; now the bridge starts alone
    started = time.monotonic()
    await asyncio.to_thread(stack.bridge.start, ready=False)
    log(f"bridge answering {time.monotonic() - started:.1f} s after its start, Synapse down")
    citizens = [Citizen(stack.public_url, i) for i in range(args.citizens)]
    watch = Watch(stack, [], citizens)
    watch.start()
    pool = new_pool(stack)
    repliers: list[asyncio.Task] = []
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(stack.public_url + "/chat") as resp:
                page = resp.status
        for c in citizens:
            await c.create(topic=TOPIC, display_name=f"Early {c.index}")
            await c.connect()
        early_start = time.monotonic()
        for k in range(args.messages):
            for c in citizens:
                await c.say(f"c{c.index} m{k}")
        acks = time.monotonic() - early_start
        await asyncio.sleep(max(0.0, started + args.down - time.monotonic()))
        health_before = watch.health_between(started, time.monotonic())
        log("starting Synapse")
        await asyncio.to_thread(stack.synapse.start)
        hs_up = time.monotonic()
        officers = await start_officers(pool, stack)
        watch.officers = officers
        seen: set[str] = set()
        replied: list[tuple[int, int]] = []
        reply_events: dict[tuple[int, int], str] = {}
        repliers = [asyncio.create_task(answer_everything(o, seen, replied, reply_events)) for o in officers]
        sent = {(c.index, k) for c in citizens for k in range(args.messages)}

        def owed() -> set[str]:
            return ({f"c{i} m{k}" for i, k in sent} - set(watch.at_officer)) | \
                   ({f"{REPLY}c{i} m{k}" for i, k in sent} - set(watch.at_citizen))
        await wait_owed("everything written before the homeserver came", owed, officers=officers)
        await asyncio.sleep(1.5)
        ways = both_ways(officers, citizens, sent, replied)
        for r in ways.values():
            r.pop("_lost")
        at_officers = [watch.at_officer[f"c{i} m{k}"] - hs_up for i, k in sent if f"c{i} m{k}" in watch.at_officer]
        return {"scenario": "cold-start", "citizens": args.citizens, "messages": args.messages, "down_s": args.down,
                "page_status": page, "acked_before_homeserver": sum(len(c.acked()) for c in citizens),
                "acks_s": round(acks, 2), **ways,
                "health_before": health_before,
                "health_ok_after_synapse_start_s": seconds(watch.first_ok_after(hs_up)),
                "synapse_start_to_last_at_officer_s": seconds(max(at_officers, default=None)),
                "took_s": round(time.monotonic() - started, 1)}
    finally:
        await watch.stop()
        await wind_down(repliers, citizens, pool)


def cold_start_verdict(r: dict[str, Any]) -> list[str]:
    missed = [way for way in ("to_officers", "to_citizens") if not met(r[way])]
    if r["page_status"] != 200:
        missed.append(f"page answered {r['page_status']}")
    if r["acked_before_homeserver"] != r["citizens"] * r["messages"]:
        missed.append(f"acknowledged before the homeserver: {r['acked_before_homeserver']}")
    if set(r["health_before"]) != {"homeserver_unreachable"}:
        missed.append(f"/health before the homeserver: {r['health_before']}")
    if r["health_ok_after_synapse_start_s"] is None:
        missed.append("/health never ok after Synapse started")
    return missed


def print_cold_start(r: dict[str, Any]) -> None:
    print(f"Homeserver unreachable at start — the bridge started {r['down_s']} s before Synapse; {r['citizens']} "
          f"citizens × {r['messages']} lines meanwhile; {r['took_s']} s")
    print_ways((("citizen → officer", r["to_officers"]), ("officer → citizen", r["to_citizens"])))
    print(f"before Synapse: page {r['page_status']}, {r['acked_before_homeserver']} of "
          f"{r['citizens'] * r['messages']} lines acknowledged ({r['acks_s']} s for all), /health {r['health_before']}")
    print(f"Synapse up → /health ok {r['health_ok_after_synapse_start_s']} s, → last early line at an officer "
          f"{r['synapse_start_to_last_at_officer_s']} s (includes the officers signing in and saying !available)")


SCENARIOS = {"restart": (restart, restart_verdict, print_restart),
             "outage": (outage, outage_verdict, print_outage),
             "cold-start": (cold_start, cold_start_verdict, print_cold_start)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=SCENARIOS, required=True)
    ap.add_argument("--citizens", type=int, default=None, help="default: restart 4, outage 3, cold-start 4")
    ap.add_argument("--down", type=float, default=None,
                    help="seconds Synapse (restart, cold-start) or the bridge (outage) is down; "
                         "default: 60, 600, 60")
    ap.add_argument("--rate", type=float, default=2.0, help="restart: citizens' messages a second, together")
    ap.add_argument("--before", type=float, default=20.0, help="restart: seconds of traffic before the stop")
    ap.add_argument("--after", type=float, default=20.0, help="restart: seconds of traffic after Synapse is back")
    ap.add_argument("--every", type=float, default=10.0, help="outage: seconds between an officer's lines")
    ap.add_argument("--compare", action="store_true", help="outage: a second outage with the start-up ping off")
    ap.add_argument("--messages", type=int, default=4, help="cold-start: lines each citizen writes before Synapse")
    ap.add_argument("--element-officers", type=int, default=1, choices=range(3),
                    help="restart: how many of the two officers run Element's client stack (matrix-js-sdk + Rust "
                         "crypto; the others matrix-nio)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, databases)")
    args = ap.parse_args()
    args.citizens = args.citizens or {"restart": 4, "outage": 3, "cold-start": 4}[args.scenario]
    args.down = args.down if args.down is not None else {"restart": 60, "outage": 600, "cold-start": 60}[args.scenario]
    if args.citizens < 1 or args.down <= 0 or args.rate <= 0 or args.every <= 0 or args.messages < 1:
        ap.error("counts, rates and durations must be positive")
    logging.getLogger("nio").setLevel(logging.ERROR)
    run, verdict, show = SCENARIOS[args.scenario]
    stack = Stack.prepare(keep=args.keep)
    try:
        log(f"run directory {stack.dir}; scenario {args.scenario}")
        result = asyncio.run(run(stack, args))
    finally:
        stack.close()
    return conclude(result, verdict, show)


if __name__ == "__main__":
    sys.exit(main())
