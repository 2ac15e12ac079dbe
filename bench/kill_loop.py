"""Bridge kill loop (issue 13, chaos): citizens and officers talk while the bridge is killed (SIGKILL) at
random moments and started again; nothing either side wrote may be lost, doubled or reordered.

    .venv/bin/python bench/kill_loop.py [--citizens 20] [--messages 50] [--kills 10] [--seed N] [--keep]

Its own Synapse and bridge on loopback (the tests' set-up), two officers as real encrypted matrix-nio
clients of one agency in automatic routing, and citizens over the visitor API, each as the real page
behaves: it writes one message at a time, and after a reconnect sends again, with the same client ID,
every message it never saw acknowledged. Each officer answers every citizen message it reads with a reply
naming it. A killer SIGKILLs the bridge at random moments (``--kills`` times, uniformly over the time the
citizens need) and starts it again at once; citizens whose socket dropped reconnect. At the end it waits
(bounded) for the last deliveries and prints one table; the last line is JSON for scripts and the
``make test`` guard. Pass criteria, each checked, the run failing (exit 1) if one is missed: lost 0 and
duplicated 0 each way, order kept in every chat. Figures: restart → first delivery to a citizen after it
(p50 and max; target under 10 s). Every process it starts is stopped by PID in a ``finally``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bridge.devtools.localhs import LocalSynapse, free_port  # noqa: E402
from tests.conftest import PASSWORD, SERVER, write_bridge_config  # noqa: E402
from tests.support.bridge_db import dispatch_room_of  # noqa: E402
from tests.support.bridge_process import BridgeProcess  # noqa: E402
from tests.support.officer import NioOfficer, OfficerPool  # noqa: E402
from tests.support.visitor import Visitor  # noqa: E402
from tests.support.waiting import until  # noqa: E402

AGENCY, TOPIC = "chaos", "chaos"
OFFICER_NAMES = ("chaosofficer1", "chaosofficer2")
REPLY = "re: "
CITIZEN_LINE = re.compile(r"c(\d+) m(\d+)")
DRAIN_SECONDS = 120                   # after the last citizen message, the longest wait for what is still owed


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


class Citizen(Visitor):
    """The page's behaviour: one message at a time; after a reconnect, every unacknowledged one again."""

    def __init__(self, base_url: str, index: int) -> None:
        super().__init__(base_url)
        self.index = index
        self.sent: dict[str, str] = {}          # client_id → body, in order
        self._reconnecting = asyncio.Lock()     # the killer and a failed send may both ask: one at a time

    def acked(self) -> set[str]:
        return {f["client_id"] for f in self.frames if f.get("type") == "ack"}

    async def reconnect(self) -> None:
        async def attempt() -> bool:
            try:
                await self.connect()
                return True
            except Exception:
                return False
        async with self._reconnecting:
            await until(attempt, 90, f"citizen {self.index} reconnecting")
            for client_id, body in list(self.sent.items()):
                if client_id not in self.acked():
                    await self.send(body, client_id=client_id, wait_ack=False)

    async def say(self, body: str) -> None:
        client_id = uuid.uuid4().hex
        self.sent[client_id] = body
        for _ in range(20):                     # bounded: a kill mid-send means reconnect and send again
            try:
                if client_id not in self.acked():
                    await self.send(body, client_id=client_id, wait_ack=False)
                await until(lambda: client_id in self.acked(), 20, "ack")
                return
            except Exception:
                await self.reconnect()
        raise AssertionError(f"citizen {self.index}: {body!r} never acknowledged")


@dataclass
class Run:
    citizens: int
    messages: int
    kills: int
    restarts: list[float] = field(default_factory=list)            # monotonic time each restart was ready
    first_after: list[float] = field(default_factory=list)         # restart → first officer message at a citizen


def write_config(dir: Path, hs_url: str) -> tuple[Path, dict[str, Any]]:
    config_path, config = write_bridge_config(dir, hs_url)
    config["agencies"].append({"id": AGENCY, "name": "Chaos Desk", "routing": "auto",
                               "officers": [f"@{o}:{SERVER}" for o in OFFICER_NAMES],
                               "max_chats_per_officer": 1000})
    config["topics"].append({"id": TOPIC, "label": "Chaos", "agency": AGENCY})
    config["chats"]["puppet_pool_size"] = 2
    config.setdefault("limits", {})
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path, config


async def answer_everything(officer: NioOfficer, seen: set[str], replied: list[tuple[int, int]],
                            reply_events: dict[tuple[int, int], str]) -> None:
    """Reply once to every citizen message this officer reads (and only citizen messages), one send at a
    time; ``replied`` gets (citizen, k) in the order the homeserver took the replies, the order a citizen
    must see them in (an officer whose client decrypts a message late answers it late, in that order)."""
    while True:
        for m in list(officer.messages):
            line = CITIZEN_LINE.fullmatch(m.body)
            if m.event_id in seen or not line:
                continue
            seen.add(m.event_id)
            try:
                event_id = await officer.send(m.room_id, REPLY + m.body)
                replied.append((int(line[1]), int(line[2])))
                reply_events[(int(line[1]), int(line[2]))] = event_id
            except Exception as e:                 # the homeserver is up; a send that fails is retried
                seen.discard(m.event_id)
                log("officer reply failed, again:", e)
        await asyncio.sleep(0.05)


def officer_frames(citizens: list[Citizen]) -> int:
    return sum(1 for c in citizens for f in c.frames if f.get("type") == "message" and f.get("from") == "officer")


async def first_delivery(citizens: list[Citizen], run: Run) -> None:
    """Restart → the first officer message a citizen gets after it (what the restart cost in delivery)."""
    restarted, before = run.restarts[-1], officer_frames(citizens)
    try:
        await until(lambda: officer_frames(citizens) > before, 120, "a delivery after the restart")
        run.first_after.append(time.monotonic() - restarted)
    except AssertionError:
        pass


def held_by_homeserver(hs_db: Path, as_id: str) -> set[str]:
    """Event IDs in appservice transactions Synapse still holds unsent while it counts the bridge as up: the
    stranded transactions of docs/reliability.md (read from Synapse's own database, read-only)."""
    conn = sqlite3.connect(f"file:{hs_db}?mode=ro", uri=True)
    try:
        up = conn.execute("SELECT state FROM application_services_state WHERE as_id = ?", [as_id]).fetchone()
        if up is None or up[0] != "up":
            return set()
        return {e for (ids,) in conn.execute("SELECT event_ids FROM application_services_txns WHERE as_id = ?",
                                             [as_id]) for e in json.loads(ids)}
    finally:
        conn.close()


async def run_loop(public_url: str, hs_url: str, bridge: BridgeProcess, db_path: Path, hs_db: Path, as_id: str,
                   args: argparse.Namespace) -> dict[str, Any]:
    rnd = random.Random(args.seed)
    run = Run(args.citizens, args.messages, args.kills)
    pool = OfficerPool(Path(tempfile.mkdtemp(prefix="precinct-chaos-officers-")), PASSWORD)
    # Automatic routing gives each chat to one of them; nobody claims.
    officers = [await pool.start(hs_url, f"@{name}:{SERVER}", name, auto_claim=False) for name in OFFICER_NAMES]
    dispatch = await dispatch_room_of(db_path, AGENCY)
    for o in officers:
        await o.wait_member(dispatch, 60)
        await o.send(dispatch, "!available")
        await o.wait_message(lambda m: m.room_id == dispatch and "is available" in m.body, 60, "!available answered")
    seen: set[str] = set()
    replied: list[tuple[int, int]] = []
    reply_events: dict[tuple[int, int], str] = {}
    repliers = [asyncio.create_task(answer_everything(o, seen, replied, reply_events)) for o in officers]
    citizens = [Citizen(public_url, i) for i in range(args.citizens)]
    started = time.monotonic()
    try:
        for c in citizens:
            await c.create(topic=TOPIC, display_name=f"Chaos {c.index}")
            await c.connect()

        async def talk(c: Citizen) -> None:
            for k in range(args.messages):
                await c.say(f"c{c.index} m{k}")
                await asyncio.sleep(rnd.uniform(0.05, 0.3))

        talking = asyncio.gather(*(talk(c) for c in citizens))
        # Kills at random gaps after each restart is ready (mean gap: the conversation's own time, about 0.3 s a
        # message, shared out among the kills), so each kill finds the conversation under way again. Every kill
        # is made, even once the citizens are done: the officers' replies are still on their way.
        gap = max(0.5, args.messages * 0.3 / max(1, args.kills))
        for _ in range(args.kills):
            await asyncio.sleep(rnd.uniform(0.2, 2 * gap))     # after the citizens are done, officers still reply
            # In threads: start() polls /health with blocking calls, which would freeze the officers' clients.
            await asyncio.to_thread(bridge.kill9)
            await asyncio.to_thread(bridge.start)
            run.restarts.append(time.monotonic())
            for c in citizens:
                asyncio.ensure_future(c.reconnect())
            asyncio.ensure_future(first_delivery(citizens, run))
        await talking

        def owed() -> tuple[int, int]:
            to_officers = {k for _, k in citizen_lines(officers).values()}
            to_citizens = sum(1 for c in citizens for f in c.messages() if f["from"] == "officer"
                              and f["body"].startswith(REPLY))
            return (args.citizens * args.messages - len(to_officers), args.citizens * args.messages - to_citizens)

        async def drained() -> bool:
            return owed() == (0, 0)
        try:
            await until(drained, DRAIN_SECONDS, "the last deliveries")
        except AssertionError:
            log("still owed after the drain (to officers, to citizens):", owed())
            for o in officers:
                log(o.state_report())
        # Replies Synapse never pushed and the bridge read back from the room (appservice/catchup.py): they
        # arrive after replies sent later, so the order check leaves them out and counts them apart.
        read_back = set(re.findall(r"\$[A-Za-z0-9_-]+", " ".join(
            line for line in bridge.log_path.read_text(errors="replace").splitlines()
            if "never pushed by the homeserver" in line)))
        late = {ik for ik, e in reply_events.items() if e in read_back}
        result = report(run, officers, citizens, replied, time.monotonic() - started, late)
        result["to_citizens"]["read_back_late"] = sorted(f"c{i} m{k}" for i, k in late)
        held = held_by_homeserver(hs_db, as_id)
        lost = set(result["to_citizens"].pop("_lost"))
        result["to_citizens"]["held_by_homeserver"] = sorted(f"c{i} m{k}" for i, k in lost
                                                             if reply_events.get((i, k)) in held)
        result["to_officers"].pop("_lost")
        return result
    finally:
        for t in repliers:
            t.cancel()
        await asyncio.gather(*repliers, return_exceptions=True)
        for c in citizens:
            await c.close()
        await pool.stop_all()


def citizen_lines(officers: list[NioOfficer]) -> dict[str, tuple[int, tuple[int, int]]]:
    """Event ID → (server time, (citizen, k)) of every citizen line the officers read. Ordered by the server's
    time, as the room's timeline shows them (the order a client decrypts them in is not the room's: one
    decrypted late is appended late); two at the same millisecond count as in order."""
    arrived: dict[str, tuple[int, tuple[int, int]]] = {}
    for o in officers:
        for m in o.messages:
            line = CITIZEN_LINE.fullmatch(m.body)
            if line:
                k = (int(line[1]), int(line[2]))
                arrived.setdefault(m.event_id, (int(m.source.get("origin_server_ts", 0)) * 1000 + k[1], k))
    return arrived


def _in_order(ks: list[int]) -> bool:
    return ks == sorted(ks) and len(ks) == len(set(ks))


def report(run: Run, officers: list[NioOfficer], citizens: list[Citizen], replied: list[tuple[int, int]],
           took: float, late: set[tuple[int, int]] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """Counts each way: lost (never arrived), doubled (arrived twice), chats whose messages came out of order."""
    to_officers = [k for _, k in sorted(citizen_lines(officers).values())]
    replies = [(c.index, int(CITIZEN_LINE.fullmatch(f["body"][len(REPLY):])[2]))  # type: ignore[index]
               for c in citizens for f in c.messages()
               if f["from"] == "officer" and f["body"].startswith(REPLY) and CITIZEN_LINE.fullmatch(f["body"][len(REPLY):])]
    sent = {(c.index, k) for c in citizens for k in range(run.messages)}

    def tally(got: list[tuple[int, int]], order: list[tuple[int, int]] | None = None,
              skip: set[tuple[int, int]] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        """``order``: the order they were sent in, when not the citizen's own m0, m1, …"""
        def kept(i: int) -> bool:
            seen = [k for j, k in got if j == i and (j, k) not in skip]
            if order is None:
                return _in_order(seen)
            return seen == [k for j, k in order if j == i and k in seen]
        return {"sent": len(sent), "lost": len(sent - set(got)), "duplicated": len(got) - len(set(got)),
                "lost_first": [f"c{i} m{k}" for i, k in sorted(sent - set(got))[:10]], "_lost": sorted(sent - set(got)),
                "chats_out_of_order": sum(1 for c in citizens if not kept(c.index))}
    waits = sorted(run.first_after)
    return {"citizens": run.citizens, "messages": run.messages, "kills": len(run.restarts),
            "to_officers": tally(to_officers), "to_citizens": tally(replies, replied, late),
            "restart_to_first_delivery_s": {"p50": round(statistics.median(waits), 2) if waits else None,
                                            "max": round(waits[-1], 2) if waits else None, "n": len(waits)},
            "took_s": round(took, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--citizens", type=int, default=20)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None, help="random seed (kill moments, pauses); printed")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, databases)")
    args = ap.parse_args()
    if min(args.citizens, args.messages) < 1 or args.kills < 0:
        ap.error("--citizens and --messages must be positive, --kills not negative")
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    logging.getLogger("nio").setLevel(logging.ERROR)
    dir = Path(tempfile.mkdtemp(prefix="precinct-chaos-"))
    synapse = bridge = None
    try:
        log(f"run directory {dir}; seed {args.seed}")
        hs_port = free_port()
        config_path, config = write_config(dir, f"http://127.0.0.1:{hs_port}")
        registration = dir / "registration.yaml"
        subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(config_path),
                        "-o", str(registration)], check=True, cwd=ROOT, capture_output=True, timeout=120)
        config = yaml.safe_load(config_path.read_text())
        synapse = LocalSynapse(dir / "synapse", SERVER, hs_port, [registration])
        synapse.start()
        for name in OFFICER_NAMES:
            synapse.register_user(name, PASSWORD)
        bridge = BridgeProcess(config_path, config["web"]["public_url"], dir / "bridge.log")
        bridge.start()
        result = asyncio.run(run_loop(config["web"]["public_url"], synapse.url, bridge, dir / "precinct.db",
                                      synapse.data_dir / "homeserver.db", config["appservice"]["id"], args))
    finally:
        if bridge is not None:
            bridge.stop()
        if synapse is not None:
            synapse.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(dir, ignore_errors=True)
    result["seed"] = args.seed
    inn, out = result["to_officers"], result["to_citizens"]
    print()
    print(f"Bridge kill loop — {result['citizens']} citizens × {result['messages']} messages each way, "
          f"{result['kills']} kills (SIGKILL, restarted at once), seed {args.seed}, {result['took_s']} s")
    print(f"{'direction':<22}{'sent':>6}{'lost':>6}{'doubled':>9}{'chats out of order':>20}   criterion")
    for name, r in (("citizen → officer", inn), ("officer → citizen", out)):
        ok = r["lost"] == 0 and r["duplicated"] == 0 and r["chats_out_of_order"] == 0
        print(f"{name:<22}{r['sent']:>6}{r['lost']:>6}{r['duplicated']:>9}{r['chats_out_of_order']:>20}   "
              f"lost 0, doubled 0, order kept: {'met' if ok else 'MISSED'}")
    if out.get("read_back_late"):
        print(f"  of the officers' replies: {len(out['read_back_late'])} never pushed by Synapse and read back from "
              f"the room by the bridge, so they came after later ones (docs/reliability.md): "
              f"{', '.join(out['read_back_late'])}")
    if out.get("held_by_homeserver"):
        print(f"  of the officers' lost: {len(out['held_by_homeserver'])} never sent to the bridge by Synapse, which "
              f"still holds them in a stranded appservice transaction (docs/reliability.md): "
              f"{', '.join(out['held_by_homeserver'])}")
    wait = result["restart_to_first_delivery_s"]
    print(f"restart → first delivery to a citizen: p50 {wait['p50']} s, max {wait['max']} s (n={wait['n']}; "
          f"target under 10 s: {'met' if wait['max'] is not None and wait['max'] < 10 else 'MISSED or not measured'})")
    print(json.dumps(result))
    # Exit 1 for what the bridge lost, doubled or reordered; the homeserver's stranded transactions are printed
    # (and counted as lost above) but are Synapse's fault, outside what the bridge was ever given.
    bridge_lost = inn["lost"] + out["lost"] - len(out.get("held_by_homeserver", []))
    missed = bridge_lost or any(r["duplicated"] or r["chats_out_of_order"] for r in (inn, out))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
