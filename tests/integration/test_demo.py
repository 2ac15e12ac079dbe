"""`make demo` as an evaluator runs it: ``python -m bridge demo`` in its own terminal session.

What it prints must work (the citizen page and visitor API, the officer's login on the homeserver, the
officer in the dispatch room), Ctrl-C must leave nothing behind (neither process, no listener), the next
run on the same folder must give back the same login and the chats of the last one, and a second demo on
a folder in use must be refused without touching the one that runs. A demo that was killed (SIGKILL)
must not block the next one, which stops the Synapse it left behind. Ctrl-C comes while the citizen's
page is still connected, as it usually is when someone tries the demo.

Each demo is started with ``--free-ports`` so it never races a person's demo or another test for 8008
and 8080. Every process started here (the demo and its Synapse child) is stopped by PID at the end,
whatever happened.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import nio
import pytest

from bridge.devtools.demo import PREFERRED_PORTS
from bridge.devtools.localhs import request_json
from tests.support.bridge_db import rows
from tests.support.visitor import Visitor

ROOT = Path(__file__).parents[2]
READY = "Press Ctrl-C to stop."
DISPATCH_ROOM_NAME = "Dispatch — Demo Police"     # what the banner tells the officer to accept
OFFICERS_ROOM_NAME = "Demo Police — officers"     # "the officer's own" room, per the banner
T = TypeVar("T")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback only, never a proxy


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---- processes and listeners, read from /proc -------------------------------------------------------

def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _tcp_listeners() -> dict[int, int]:
    """Socket inode → port of every TCP socket listening on this machine (IPv4 and IPv6)."""
    listeners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":                                   # TCP_LISTEN
                listeners[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return listeners


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:                                             # closed since the listing
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(int(match[1]))
    return {port for inode, port in _tcp_listeners().items() if inode in inodes}


def listened_anywhere(ports: set[int]) -> set[int]:
    return ports & set(_tcp_listeners().values())


def stop_by_pid(pid: int, must_mention: str, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM, then SIGKILL, of a process this test started (checked by its command line: never a PID
    that was reused by something else)."""
    if not alive(pid) or must_mention not in cmdline(pid):
        if proc is not None:
            proc.poll()
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not alive(pid) or (proc is not None and proc.poll() is not None), 20, f"pid {pid} to stop")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=20)


# ---- one demo run ------------------------------------------------------------------------------------

@dataclass
class Banner:
    citizen_page: str
    homeserver: str
    user_id: str
    password: str


class DemoRun:
    """``python -m bridge demo --data DIR --free-ports`` in a session of its own, as a terminal's job is."""

    def __init__(self, data: Path, name: str) -> None:
        self.data = data.resolve()
        self.out, self.err = data.parent / f"{name}.out", data.parent / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "demo", "--data", str(self.data), "--free-ports"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        self.synapse_pids: set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    def note_synapse(self) -> int | None:
        """The demo's Synapse child, remembered so it is stopped even if the demo is gone first."""
        found = [p for p in children(self.pid) if "synapse.app.homeserver" in cmdline(p)]
        self.synapse_pids.update(found)
        return found[0] if found else None

    def wait_ready(self, timeout: float = 120) -> Banner:
        def ready_or_exited() -> bool:
            self.note_synapse()
            return READY in self.stdout() or self.proc.poll() is not None
        wait_for(ready_or_exited, timeout, "the demo's banner")
        text = self.stdout()
        assert READY in text and self.proc.poll() is None, f"the demo did not start:\n{self.output()}"

        def field(label: str) -> str:
            match = re.search(rf"^ {re.escape(label)}\s+(\S+)$", text, re.M)
            assert match, f"{label!r} missing from the banner:\n{text}"
            return match[1]
        return Banner(field("Citizen chat page"), field("Homeserver (for Element)"), field("Officer user ID"),
                      field("Officer password"))

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group, as Ctrl-C in the terminal sends it."""
        os.killpg(self.pid, signal.SIGINT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.note_synapse()
        stop_by_pid(self.pid, str(self.data), self.proc)
        for pid in self.synapse_pids:
            stop_by_pid(pid, str(self.data))


@pytest.fixture
def demos() -> Iterator[Callable[[Path, str], DemoRun]]:
    started: list[DemoRun] = []

    def start(data: Path, name: str) -> DemoRun:
        started.append(DemoRun(data, name))
        return started[-1]
    try:
        yield start
    finally:
        for run in started:
            run.stop()


# ---- what the banner promises ----------------------------------------------------------------------

def get(url: str) -> tuple[int, str, str]:
    try:
        with _OPENER.open(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def open_chat(citizen_page: str, words: str) -> tuple[str, str, int]:
    """A citizen's chat through the visitor API of the page's server, with one message: (id, token, number)."""
    base = citizen_page.removesuffix("/chat")
    status, chat = request_json("POST", f"{base}/api/v1/chats", {"display_name": "Demo Tester"})
    assert status == 201, chat
    status, body = request_json("POST", f"{base}/api/v1/chats/{chat['chat_id']}/messages",
                                {"client_id": uuid.uuid4().hex, "body": words}, token=chat["token"])
    assert status == 201, body
    return chat["chat_id"], chat["token"], chat["number"]


def chat_history(citizen_page: str, chat_id: str, token: str) -> tuple[dict, list[str]]:
    base = citizen_page.removesuffix("/chat")
    status, state = request_json("GET", f"{base}/api/v1/chats/{chat_id}", token=token)
    assert status == 200, state
    status, history = request_json("GET", f"{base}/api/v1/chats/{chat_id}/messages?since=0", token=token)
    assert status == 200, history
    return state, [m.get("body", "") for m in history["messages"]]


async def officer_rooms(banner: Banner) -> tuple[dict[str, str], dict[str, str]]:
    """Sign in as the printed officer with a real Matrix client: (joined, invited) room ID → name."""
    client = nio.AsyncClient(banner.homeserver, banner.user_id)
    try:
        login = await client.login(banner.password, device_name="test_demo")
        assert isinstance(login, nio.LoginResponse), f"the printed officer login is refused: {login}"
        synced = await client.sync(timeout=0, full_state=True)
        assert isinstance(synced, nio.SyncResponse), synced
        joined = {room_id: room.name or "" for room_id, room in client.rooms.items()}
        invited = {room_id: room.name or "" for room_id, room in client.invited_rooms.items()}
        await client.logout()              # leave no device of this test in the officer's session list
        return joined, invited
    finally:
        await client.close()


def dispatch_room(data: Path) -> str:
    found = rows(data / "precinct.db", "SELECT value FROM settings WHERE key = 'dispatch_room.demo'")
    assert found and found[0][0], "the bridge recorded no dispatch room"
    return found[0][0]


def check_officer(banner: Banner, data: Path) -> str:
    """The printed login signs in; the officer has the dispatch room (invited, as the banner says, or
    joined) and their own room. Returns the dispatch room's ID."""
    joined, invited = asyncio.run(officer_rooms(banner))
    room = dispatch_room(data)
    assert room in joined or room in invited, f"officer not in the dispatch room {room}: {joined=} {invited=}"
    assert {**joined, **invited}[room] == DISPATCH_ROOM_NAME
    assert OFFICERS_ROOM_NAME in joined.values(), joined
    return room


def ports_of(run: DemoRun, synapse: int, banner: Banner) -> set[int]:
    """Every port the demo and its Synapse listen on (the printed web and homeserver ports among them)."""
    ports = listening_ports(run.pid) | listening_ports(synapse)
    printed = {int(banner.citizen_page.split(":")[2].split("/")[0]), int(banner.homeserver.rsplit(":", 1)[1])}
    assert printed <= ports, (printed, ports)
    assert not ports & set(PREFERRED_PORTS.values()), ports    # --free-ports: never a person's demo's ports
    assert len(ports) >= 4, ports            # web, appservice, metrics; the homeserver's client API
    return ports


async def ctrl_c_with_the_page_open(run: DemoRun, banner: Banner, chat_id: str, token: str, words: str) -> int:
    """Ctrl-C while the citizen's page is connected (as when the evaluator leaves it open): the page says
    ``words`` over its WebSocket first, and is told the server is going away (1001) rather than just cut off.
    Returns the demo's exit code."""
    page = Visitor(banner.citizen_page.removesuffix("/chat"))
    page.chat_id, page.token = chat_id, token
    page.ws_url = page.base_url.replace("http", "ws", 1) + f"/api/v1/chats/{chat_id}/ws"
    try:
        await page.connect()
        await page.send(words)                                      # acknowledged: stored
        run.ctrl_c()
        try:
            code = await asyncio.to_thread(run.proc.wait, 90)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not stop on Ctrl-C:\n{run.output()}")
        assert page._reader is not None
        await asyncio.wait_for(page._reader, 30)                    # the socket has closed
        assert page.ws is not None and page.ws.close_code == 1001, page.ws and page.ws.close_code
        return code
    finally:
        await page.close()


def check_stopped_by_ctrl_c(run: DemoRun, synapse: int, ports: set[int], code: int | None = None) -> None:
    """Ctrl-C (unless ``code`` says it was pressed already) leaves neither process nor listener behind."""
    if code is None:
        run.ctrl_c()
        try:
            code = run.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not stop on Ctrl-C:\n{run.output()}")
    assert code == 0, run.output()
    assert "Demo stopped." in run.stdout() and "Traceback" not in run.stderr(), run.output()
    assert not alive(run.pid)
    assert not alive(synapse), f"Synapse (pid {synapse}) outlived the demo's Ctrl-C"
    assert not listened_anywhere(ports), f"still listening after Ctrl-C: {listened_anywhere(ports)}"
    assert not (run.data / "synapse.pid").exists()


# ---- the tests ---------------------------------------------------------------------------------------

def test_the_demo_works_as_printed_stops_on_ctrl_c_comes_back_and_refuses_a_second_one(tmp_path: Path, demos):
    data = tmp_path / "demo-data"
    words = f"I lost my bike near the station ({uuid.uuid4().hex[:8]})"

    first = demos(data, "first")
    banner = first.wait_ready()
    synapse = first.note_synapse()
    assert synapse is not None, "no Synapse child"
    status, kind, page = get(banner.citizen_page)
    assert status == 200 and kind.startswith("text/html") and "<form" in page, (status, kind, page[:300])
    chat_id, token, number = open_chat(banner.citizen_page, words)
    state, said = chat_history(banner.citizen_page, chat_id, token)
    assert state["state"] == "waiting" and words in said
    ports = ports_of(first, synapse, banner)

    # A second demo on the folder in use: refused, named, and the first one untouched.
    second = demos(data, "second")
    wait_for(lambda: second.proc.poll() is not None or READY in second.stdout(), 60, "the second demo to answer")
    assert second.proc.poll() is not None, f"a second demo started on {data}:\n{second.output()}"
    assert second.proc.returncode != 0
    assert "already running" in second.stderr() and str(data.resolve()) in second.stderr(), second.output()
    assert "Traceback" not in second.stderr() and READY not in second.stdout()
    assert alive(first.pid) and alive(synapse) and first.note_synapse() == synapse
    assert ports_of(first, synapse, banner) == ports
    room = check_officer(banner, data)          # after the refusal: the running demo still serves all of it
    assert chat_history(banner.citizen_page, chat_id, token)[1] == said

    more = f"It is a red bicycle ({uuid.uuid4().hex[:8]})"
    code = asyncio.run(ctrl_c_with_the_page_open(first, banner, chat_id, token, more))
    check_stopped_by_ctrl_c(first, synapse, ports, code)

    # Again on the same folder: the same login, the same dispatch room, the chat of the first run.
    third = demos(data, "third")
    again = third.wait_ready()
    synapse = third.note_synapse()
    assert synapse is not None
    assert (again.user_id, again.password) == (banner.user_id, banner.password)
    assert check_officer(again, data) == room
    state, said = chat_history(again.citizen_page, chat_id, token)
    assert state["number"] == number and state["state"] == "waiting" and words in said and more in said
    check_stopped_by_ctrl_c(third, synapse, ports_of(third, synapse, again))


def test_a_killed_demo_does_not_block_the_next_which_stops_its_synapse(tmp_path: Path, demos):
    data = tmp_path / "demo-data"
    killed = demos(data, "killed")
    banner = killed.wait_ready()
    orphan = killed.note_synapse()
    assert orphan is not None
    os.kill(killed.pid, signal.SIGKILL)            # no clean-up at all: the flock goes with the process
    killed.proc.wait(timeout=20)
    assert alive(orphan)                            # nothing stopped its Synapse

    after = demos(data, "after")
    again = after.wait_ready()
    assert "left running by an earlier demo" in after.stdout(), after.output()
    assert not alive(orphan), f"the killed demo's Synapse (pid {orphan}) still runs"
    synapse = after.note_synapse()
    assert synapse is not None and synapse != orphan
    assert again.password == banner.password
    status, body = request_json("POST", f"{again.homeserver}/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "officer"},
        "password": again.password})
    assert status == 200, body
    request_json("POST", f"{again.homeserver}/_matrix/client/v3/logout", {}, token=body["access_token"])
    check_stopped_by_ctrl_c(after, synapse, ports_of(after, synapse, again))
