"""What the chaos scripts share (bench/kill_loop.py, bench/chaos_homeserver.py): the stack on loopback (own
Synapse and bridge), officers as real encrypted clients of one agency in automatic routing (matrix-nio, and
on request matrix-js-sdk with its Rust crypto, the stack Element runs), citizens behaving as the page does,
and counting lost, doubled and reordered messages from each client's own view.

Imported by the scripts (run as ``bench/NAME.py``, so this folder is on their path); not a script itself.
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bridge.devtools.localhs import LocalSynapse, free_port  # noqa: E402
from tests.conftest import PASSWORD, SERVER, write_bridge_config  # noqa: E402
from tests.support.bridge_db import dispatch_room_of  # noqa: E402
from tests.support.bridge_process import BridgeProcess  # noqa: E402
from tests.interop.officer_client import JsOfficer  # noqa: E402
from tests.support.officer import WHOLE_BURSTS, NioOfficer, OfficerPool, Received  # noqa: E402
from tests.support.visitor import Visitor  # noqa: E402
from tests.support.waiting import until  # noqa: E402

AGENCY, TOPIC = "chaos", "chaos"
OFFICER_NAMES = ("chaosofficer1", "chaosofficer2")
REPLY = "re: "
EMERGENCY_WORD = "knife"         # a citizen line with it raises an emergency alert in the dispatch room
CITIZEN_LINE = re.compile(r"c(\d+) m(\d+)")


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


class Citizen(Visitor):
    """The page's behaviour: one message at a time; after a reconnect, every unacknowledged one again."""

    def __init__(self, base_url: str, index: int) -> None:
        super().__init__(base_url)
        self.index = index
        self.sent: dict[str, str] = {}          # client_id → body, in order
        self.rate_limited = 0                   # messages refused as too fast (sent again after retry_after)
        self._reconnecting = asyncio.Lock()     # the killer and a failed send may both ask: one at a time

    def acked(self) -> set[str]:
        return {f["client_id"] for f in self.frames if f.get("type") == "ack"}

    async def reconnect(self, timeout: float = 90) -> None:
        async def attempt() -> bool:
            try:
                await self.connect()
                return True
            except Exception:
                return False
        async with self._reconnecting:
            await until(attempt, timeout, f"citizen {self.index} reconnecting")
            for client_id, body in list(self.sent.items()):
                if client_id not in self.acked():
                    await self.send(body, client_id=client_id, wait_ack=False)

    def refusal(self, client_id: str, since: int) -> dict[str, Any] | None:
        """A rate_limited error frame for this message among the frames from ``since`` on."""
        return next((f for f in self.frames[since:] if f.get("type") == "error" and f.get("client_id") == client_id
                     and f.get("error") == "rate_limited"), None)

    async def say(self, body: str) -> None:
        """Send one message until acknowledged; refused as too fast, again after ``retry_after`` as the page does."""
        client_id = uuid.uuid4().hex
        self.sent[client_id] = body
        for _ in range(20):                     # bounded: a kill mid-send means reconnect and send again
            try:
                since = len(self.frames)
                if client_id not in self.acked():
                    await self.send(body, client_id=client_id, wait_ack=False)
                await until(lambda: client_id in self.acked() or self.refusal(client_id, since), 20, "ack")
                refused = self.refusal(client_id, since)
                if client_id in self.acked():
                    return
                self.rate_limited += 1
                await asyncio.sleep(float(refused.get("retry_after") or 1))   # type: ignore[union-attr]
            except Exception:
                await self.reconnect()
        raise AssertionError(f"citizen {self.index}: {body!r} never acknowledged")

    def officer_bodies(self) -> list[str]:
        return [f["body"] for f in self.messages() if f["from"] == "officer"]


def write_config(dir: Path, hs_url: str, **overrides: Any) -> tuple[Path, dict[str, Any]]:
    """The tests' bridge config plus the chaos agency (automatic routing between the two officers);
    ``overrides``: top-level sections merged in (e.g. ``homeserver={"ping_at_start": False}``)."""
    config_path, config = write_bridge_config(dir, hs_url)
    config["agencies"].append({"id": AGENCY, "name": "Chaos Desk", "routing": "auto",
                               "officers": [f"@{o}:{SERVER}" for o in OFFICER_NAMES],
                               "max_chats_per_officer": 1000, "emergency": {"*": [EMERGENCY_WORD]}})
    config["topics"].append({"id": TOPIC, "label": "Chaos", "agency": AGENCY})
    config["chats"]["puppet_pool_size"] = 2
    config.setdefault("limits", {})
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path, config


@dataclass
class Stack:
    """A run's directory, Synapse (with the bridge's registration and the officers' accounts) and bridge;
    ``close()`` stops both by PID and removes the directory (unless ``keep``)."""
    dir: Path
    config_path: Path
    config: dict[str, Any]
    synapse: LocalSynapse
    bridge: BridgeProcess
    keep: bool = False

    @classmethod
    def prepare(cls, keep: bool = False, **overrides: Any) -> "Stack":
        """Directory, config, registration, Synapse started with the officers' accounts; the bridge not started."""
        dir = Path(tempfile.mkdtemp(prefix="precinct-chaos-"))
        hs_port = free_port()
        config_path, _ = write_config(dir, f"http://127.0.0.1:{hs_port}", **overrides)
        registration = dir / "registration.yaml"
        subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(config_path),
                        "-o", str(registration)], check=True, cwd=ROOT, capture_output=True, timeout=120)
        config = yaml.safe_load(config_path.read_text())
        synapse = LocalSynapse(dir / "synapse", SERVER, hs_port, [registration])
        stack = cls(dir, config_path, config, synapse,
                    BridgeProcess(config_path, config["web"]["public_url"], dir / "bridge.log"), keep)
        try:
            synapse.start()
            for name in OFFICER_NAMES:
                synapse.register_user(name, PASSWORD)
        except BaseException:
            stack.close()
            raise
        return stack

    @property
    def public_url(self) -> str:
        return self.config["web"]["public_url"]

    @property
    def db_path(self) -> Path:
        return self.dir / self.config["store"]["path"]

    @property
    def hs_db(self) -> Path:
        return self.synapse.data_dir / "homeserver.db"

    @property
    def as_id(self) -> str:
        return self.config["appservice"]["id"]

    def close(self) -> None:
        self.bridge.stop()
        self.synapse.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class ElementOfficer:
    """An officer on Element's client stack (matrix-js-sdk + Rust crypto, ``tests/interop/officer.mjs`` in a
    Node process of its own), seen through what the scripts read of a NioOfficer: the messages its client
    decrypted (``messages``, in the order it got them), ``send``, ``wait_message``, ``state_report`` and ``stop``.
    It joins every room it is invited to and sends a message again when the bot asks, as the nio officer does."""

    client_stack = "matrix-js-sdk + Rust crypto"

    def __init__(self, homeserver: str, user_id: str, stderr_path: Path) -> None:
        # Each sync asks for as much of a room's timeline as the nio officer's (WHOLE_BURSTS): a backlog sent at
        # once after a restart has no gap, which Element would fill by paging back as the officer scrolls.
        self.js = JsOfficer(homeserver, user_id, PASSWORD, log_level="warn", stderr_path=stderr_path,
                            sync_timeline_limit=WHOLE_BURSTS["room"]["timeline"]["limit"])
        self.user_id = user_id
        self._messages: list[Received] = []
        self._read = 0                          # how many of the process's events are in ``_messages``

    async def start(self) -> None:
        await self.js.start()

    @property
    def messages(self) -> list[Received]:
        for e in self.js.events[self._read:]:
            if e["event"] == "message":
                self._messages.append(Received(e["room_id"], e["event_id"], e["sender"], e.get("body") or "",
                                               e.get("sender_curve25519"), e.get("sender_device_id"),
                                               {"origin_server_ts": e.get("ts") or 0}))
        self._read = len(self.js.events)
        return self._messages

    async def send(self, room_id: str, body: str) -> str:
        return await self.js.send(room_id, body)

    async def wait_message(self, predicate: Any, timeout: float = 30, what: str = "an officer-side message") -> Received:
        found = await until(lambda: next((m for m in self.messages if predicate(m)), None), timeout, what)
        return found  # type: ignore[no-any-return]

    async def wait_joined(self, room_id: str, timeout: float = 60) -> None:
        await self.js.wait_for(lambda e: e["event"] == "joined" and e["room_id"] == room_id, timeout)

    def state_report(self) -> str:
        undecryptable = {e["event_id"]: e for e in self.js.events if e["event"] == "undecryptable"}
        for m in self.messages:
            undecryptable.pop(m.event_id, None)
        joined = sorted({e["room_id"] for e in self.js.events if e["event"] == "joined"})
        lines = [f"officer {self.user_id} ({self.client_stack}) device {self.js.device_id}: "
                 f"{len(self.messages)} messages, joined {joined}"]
        lines += [f"  undecryptable in {e['room_id']} from {e['sender']}: {e['reason']}" for e in undecryptable.values()]
        return "\n".join(lines + [self.js.stderr_tail(10)])

    async def stop(self) -> None:
        await self.js.stop()


async def start_officers(pool: OfficerPool, stack: Stack, element: int = 0) -> list[Any]:
    """The two officers signed in and available in the agency's dispatch room (automatic routing: nobody claims);
    the last ``element`` of them on Element's client stack (ElementOfficer), the others matrix-nio clients. Each
    is in ``pool.started``, so ``pool.stop_all()`` (``wind_down``) stops it."""
    officers: list[Any] = []
    try:
        for i, name in enumerate(OFFICER_NAMES):
            if i >= len(OFFICER_NAMES) - element:
                o = ElementOfficer(stack.synapse.url, f"@{name}:{SERVER}", stack.dir / f"{name}-node.log")
                pool.started.append(o)              # type: ignore[arg-type]  # stopped with the nio officers
                await o.start()
            else:
                o = await pool.start(stack.synapse.url, f"@{name}:{SERVER}", name, auto_claim=False)
            officers.append(o)
        dispatch = await dispatch_room_of(stack.db_path, AGENCY)
        for o in officers:
            if isinstance(o, ElementOfficer):
                await o.wait_joined(dispatch, 90)
            else:
                await o.wait_member(dispatch, 60)
            await o.send(dispatch, "!available")
            # Its own answer: the other's "… is available" is in the same room (taking that one let chats go out
            # before this officer was in the rotation, all to the other).
            answer = f"{o.user_id if isinstance(o, ElementOfficer) else o.client.user_id} is available"
            await o.wait_message(lambda m: m.room_id == dispatch and m.body.startswith(answer), 60, "!available answered")
    except BaseException:
        # Stopped here, not left to the caller: a Node officer still running would hold the run open for ever
        # (its reader waits for the process to end).
        await pool.stop_all()
        raise
    return officers


def officers_view(officers: list[Any], reply_events: dict[tuple[int, int], str],
                  sent_by: dict[str, str]) -> list[dict[str, Any]]:
    """Per officer: its client stack, how many citizen lines its client read, how many replies it sent."""
    rows = []
    for o in officers:
        user = getattr(o, "user_id", None) or o.client.user_id
        read = {m.event_id for m in o.messages if CITIZEN_LINE.fullmatch(m.body)}
        rows.append({"officer": user, "client": getattr(o, "client_stack", "matrix-nio"), "read": len(read),
                     "replied": sum(1 for e in reply_events.values() if sent_by.get(e) == user)})
    return rows


def new_pool(stack: Stack) -> OfficerPool:
    """The officers' clients keep their stores in the run directory (removed with it unless ``--keep``)."""
    return OfficerPool(stack.dir / "officers", PASSWORD)


async def answer_everything(officer: Any, seen: set[str], replied: list[tuple[int, int]],
                            reply_events: dict[tuple[int, int], str],
                            first_read: dict[str, float] | None = None,
                            sent_by: dict[str, str] | None = None) -> None:
    """Reply once to every citizen message this officer reads (and only citizen messages), one send at a
    time; ``replied`` gets (citizen, k) in the order the homeserver took the replies, the order a citizen
    must see them in (an officer whose client decrypts a message late answers it late, in that order).
    ``first_read``: body → when (monotonic) an officer first read it; ``sent_by``: reply event ID → officer."""
    while True:
        for m in list(officer.messages):
            line = CITIZEN_LINE.fullmatch(m.body)
            if m.event_id in seen or not line:
                continue
            seen.add(m.event_id)
            if first_read is not None:
                first_read.setdefault(m.body, time.monotonic())
            try:
                event_id = await officer.send(m.room_id, REPLY + m.body)
                replied.append((int(line[1]), int(line[2])))
                reply_events[(int(line[1]), int(line[2]))] = event_id
                if sent_by is not None:
                    sent_by[event_id] = getattr(officer, "user_id", None) or officer.client.user_id
            except Exception as e:                 # a send that fails (the homeserver away) is retried
                seen.discard(m.event_id)
                log("officer reply failed, again:", e)
                await asyncio.sleep(0.5)
        await asyncio.sleep(0.05)


async def wind_down(repliers: list[asyncio.Task], citizens: list[Citizen], pool: OfficerPool) -> None:
    """The end of a run, whatever happened: repliers cancelled, citizens' sockets closed, officers signed out."""
    for t in repliers:
        t.cancel()
    await asyncio.gather(*repliers, return_exceptions=True)
    for c in citizens:
        await c.close()
    await pool.stop_all()


def officer_frames(citizens: list[Citizen]) -> int:
    return sum(1 for c in citizens for f in c.frames if f.get("type") == "message" and f.get("from") == "officer")


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


def read_back_events(bridge: BridgeProcess) -> set[str]:
    """Events the bridge read back from rooms once the homeserver's push had gone past them without them
    (appservice/catchup.py; chats/inbound.py when a later message of the same sender came first)."""
    return set(re.findall(r"\$[A-Za-z0-9_-]+", " ".join(
        line for line in bridge.log_path.read_text(errors="replace").splitlines()
        if "skipped by the homeserver's push" in line)))


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


def replies_at_citizens(citizens: list[Citizen]) -> list[tuple[int, int]]:
    """(citizen, k) of every officer reply each citizen got, in the order it got them."""
    return [(c.index, int(line[2])) for c in citizens for body in c.officer_bodies()
            if body.startswith(REPLY) and (line := CITIZEN_LINE.fullmatch(body[len(REPLY):]))]


def _in_order(ks: list[int]) -> bool:
    return ks == sorted(ks) and len(ks) == len(set(ks))


def tally(sent: set[tuple[int, int]], got: list[tuple[int, int]], chats: Iterable[int],
          order: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Lost (never arrived), doubled (arrived twice) and chats whose messages came out of order, from what
    one side sent (``sent``: (chat, k)) and what the other got, in the order it got them. ``order``: the order
    they were sent in, when not each chat's k = 0, 1, … Every message is in the order check."""
    def kept(i: int) -> bool:
        seen = [k for j, k in got if j == i]
        if order is None:
            return _in_order(seen)
        return seen == [k for j, k in order if j == i and k in seen]
    lost = sorted(sent - set(got))
    return {"sent": len(sent), "lost": len(lost), "duplicated": len(got) - len(set(got)),
            "lost_first": [f"c{i} m{k}" for i, k in lost[:10]], "_lost": lost,
            "chats_out_of_order": sum(1 for i in chats if not kept(i))}


def both_ways(officers: list[NioOfficer], citizens: list[Citizen], sent: set[tuple[int, int]],
              replied: list[tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """The tallies of the citizens' lines at the officers and of the officers' replies at the citizens."""
    chats = [c.index for c in citizens]
    to_officers = [k for _, k in sorted(citizen_lines(officers).values())]
    return {"to_officers": tally(sent, to_officers, chats),
            "to_citizens": tally(sent, replies_at_citizens(citizens), chats, replied)}


def met(r: dict[str, Any], allowed_lost: int = 0) -> bool:
    return r["lost"] <= allowed_lost and r["duplicated"] == 0 and r["chats_out_of_order"] == 0


def print_ways(ways: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """One row per direction: sent, lost, doubled, chats out of order, and the criterion's verdict."""
    print(f"{'direction':<22}{'sent':>6}{'lost':>6}{'doubled':>9}{'chats out of order':>20}   criterion")
    for name, r in ways:
        print(f"{name:<22}{r['sent']:>6}{r['lost']:>6}{r['duplicated']:>9}{r['chats_out_of_order']:>20}   "
              f"lost 0, doubled 0, order kept: {'met' if met(r) else 'MISSED'}")


def conclude(result: dict[str, Any], verdict: Any, show: Any) -> int:
    """A scenario's end: its missed criteria (``verdict``) into the result, the table (``show``), the verdict
    line and the JSON line the guards read; the exit status (1 when a criterion was missed)."""
    missed = verdict(result)
    result["missed"] = missed
    print()
    show(result)
    print("criteria: " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
    print(json.dumps(result))
    return 1 if missed else 0


def explain_replies(db_path: Path, log_path: Path, citizens: list[Citizen], replied: list[tuple[int, int]],
                    reply_events: dict[tuple[int, int], str]) -> list[str]:
    """For each chat whose citizen got the officer's replies in another order than they were sent, or not all
    of them: every reply as the bridge saw it (stream, when received and handled, Megolm session and number, the
    transactions that brought it, the seq it was given) and the bridge's log lines naming the replies or their
    room-key sessions. An intermittent fault is then explained by the run that met it, whose directory is gone
    afterwards."""
    from bridge.matrix.crypto import megolm_position       # bench scripts run from the repository's root
    got = replies_at_citizens(citizens)
    lines: list[str] = []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    log_lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    try:
        for c in citizens:
            seen = [k for j, k in got if j == c.index]
            sent = [k for j, k in replied if j == c.index]
            if seen == [k for k in sent if k in seen] and set(sent) <= set(seen):
                continue
            lines.append(f"chat c{c.index}: replies sent in the order {sent}, the citizen got {seen}")
            named: set[str] = set()      # event IDs, and sessions (nio's "no session found with session id …")
            for k in sent:
                event_id = reply_events.get((c.index, k))
                if event_id is None:
                    continue
                named.add(event_id)
                row = conn.execute("SELECT stream, state, error, received_ts, processed_ts, event FROM room_events"
                                   " WHERE event_id = ?", [event_id]).fetchone()
                seq = conn.execute("SELECT seq FROM messages WHERE event_id = ?", [event_id]).fetchone()
                txns = [r[0] for r in conn.execute("SELECT txn_id FROM as_transactions WHERE instr(body, ?) > 0",
                                                   [event_id])]
                if row is None:
                    lines.append(f"  m{k} {event_id}: not in the bridge's room_events; seq {seq and seq[0]}")
                    continue
                event = json.loads(row["event"])
                position = megolm_position(event)
                if position is not None:
                    named.add(position[0])
                lines.append(f"  m{k} {event_id}: stream {row['stream']} {row['state']}"
                             f"{' (' + row['error'] + ')' if row['error'] else ''}, origin "
                             f"{event.get('origin_server_ts')} received {row['received_ts']} handled "
                             f"{row['processed_ts']}, megolm {position and (position[0][:8], position[1])}, "
                             f"transactions {txns}, seq {seq and seq[0]}")
            lines += [f"  log: {line[:300]}" for line in log_lines if any(n in line for n in named)][:20]
    finally:
        conn.close()
    return lines
