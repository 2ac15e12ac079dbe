"""Drive an Element-stack officer (``officer.mjs``: matrix-js-sdk + Rust crypto) from Python.

``JsOfficer`` starts ``node officer.mjs`` as a subprocess and speaks its line-based JSON
protocol (see the header of ``officer.mjs``)::

    async with JsOfficer(hs_url, "@officer1:localhost", "pw") as officer:   # waits for "ready"
        joined = await officer.wait_for(lambda e: e["event"] == "joined")
        msg = await officer.wait_for_event("message", room_id=room_id)
        assert msg["shield_colour"] == SHIELD_NONE
        event_id = await officer.send(room_id, "Hello, this is the police")

A new device whose sign-in a test wants to get ahead of (keys not uploaded yet, as while
Element starts)::

    officer = JsOfficer(hs_url, user, "pw", hold_after_login=True)
    await officer.start()          # returns at "logged_in": the device exists, without keys
    ...                            # something happens meanwhile
    await officer.resume()         # crypto, key upload, first sync; returns "ready"

All waits are on events the process reports, with generous deadlines; nothing sleeps blindly.
Requires ``node`` (20+) and ``tests/interop/node_modules`` (``npm ci`` in tests/interop).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from bridge.officers.bot_rooms import UNDECRYPTABLE_REPLY

__all__ = [
    "INTEROP_DIR",
    "JsOfficer",
    "JsOfficerError",
    "SHIELD_GREY",
    "SHIELD_NONE",
    "SHIELD_RED",
    "find_node",
    "prerequisites_missing",
]

INTEROP_DIR = Path(__file__).resolve().parent
OFFICER_SCRIPT = INTEROP_DIR / "officer.mjs"
NODE_MODULES = INTEROP_DIR / "node_modules"

#: ``EventShieldColour`` values from matrix-js-sdk's CryptoApi.
SHIELD_NONE = 0
SHIELD_GREY = 1
SHIELD_RED = 2

_INSTALL_HINT = "run `make test` / npm ci in tests/interop"

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class JsOfficerError(RuntimeError):
    """The officer process failed, exited, or did not report what was awaited in time."""


def find_node() -> str:
    """Path of the ``node`` executable (``PRECINCT_NODE`` overrides the PATH lookup)."""
    node = os.environ.get("PRECINCT_NODE") or shutil.which("node")
    if not node:
        raise JsOfficerError(
            "node (Node.js 20+) was not found on PATH (or set PRECINCT_NODE); "
            f"it is needed for the Element-stack officer: {_INSTALL_HINT}"
        )
    return node


def prerequisites_missing() -> str | None:
    """Why a JsOfficer cannot start here, or None if it can (handy for ``pytest.skip``)."""
    try:
        find_node()
    except JsOfficerError as exc:
        return str(exc)
    if not (NODE_MODULES / "matrix-js-sdk").is_dir() or not (NODE_MODULES / "fake-indexeddb").is_dir():
        return f"{NODE_MODULES} is missing or incomplete: {_INSTALL_HINT}"
    return None


class JsOfficer:
    """One officer on the Element client stack, as a ``node officer.mjs`` subprocess."""

    def __init__(
        self,
        homeserver: str,
        user: str,
        password: str,
        *,
        log_level: str = "info",
        stderr_path: Path | str | None = None,
        node: str | None = None,
        hold_after_login: bool = False,
        sync_timeline_limit: int | None = None,
    ) -> None:
        self.homeserver = homeserver
        self.user = user
        self.password = password
        self.log_level = log_level
        self.stderr_path = Path(stderr_path) if stderr_path else None
        self.node = node
        self.hold_after_login = hold_after_login
        #: events of a room's timeline each sync asks for (``--sync-timeline-limit`` of officer.mjs)
        self.sync_timeline_limit = sync_timeline_limit
        #: every protocol event received so far, in order
        self.events: list[Event] = []
        self.user_id: str | None = None
        self.device_id: str | None = None
        self.pid: int | None = None
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._tasks: list[asyncio.Task[None]] = []
        self._exited = False
        # The last body sent in each room, and how often the bridge's bot asked for it again.
        self._last_sent: dict[str, str] = {}
        self._resent: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self, timeout: float = 180) -> Event:
        """Start the process and wait for its ``ready`` event (returned); with ``hold_after_login``, for
        its ``logged_in`` event (``resume()`` then finishes the start-up)."""
        if self._proc is not None:
            raise JsOfficerError("already started")
        problem = prerequisites_missing()
        if problem:
            raise JsOfficerError(problem)
        node = self.node or find_node()
        self._proc = await asyncio.create_subprocess_exec(
            node,
            str(OFFICER_SCRIPT),
            "--homeserver",
            self.homeserver,
            "--user",
            self.user,
            "--password",
            self.password,
            "--log-level",
            self.log_level,
            *(["--hold-after-login"] if self.hold_after_login else []),
            *(["--sync-timeline-limit", str(self.sync_timeline_limit)] if self.sync_timeline_limit else []),
            cwd=str(INTEROP_DIR),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        self.pid = self._proc.pid
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"officer-{self.pid}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"officer-{self.pid}-stderr"),
        ]
        awaited = "logged_in" if self.hold_after_login else "ready"
        try:
            first = await self.wait_for(lambda e: e["event"] == awaited, timeout)
        except BaseException:
            await self.stop()
            raise
        self.user_id = first["user_id"]
        self.device_id = first["device_id"]
        return first

    async def resume(self, timeout: float = 180) -> Event:
        """Go on after ``logged_in`` (``hold_after_login``): crypto, key upload, first sync; returns ``ready``."""
        await self._command({"cmd": "resume"})
        return await self.wait_for(lambda e: e["event"] == "ready", timeout)

    async def stop(self, timeout: float = 20) -> int | None:
        """Ask the process to stop, wait for it, kill its PID if it does not exit in time."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"cmd":"stop"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                self._stderr_tail.append(f"[officer_client] no exit after {timeout}s: killing pid {proc.pid}")
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
        self.returncode = proc.returncode
        return self.returncode

    async def __aenter__(self) -> JsOfficer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ protocol
    async def wait_for(self, predicate: Predicate, timeout: float = 60) -> Event:
        """First received event (since the start, including earlier ones) matching ``predicate``."""
        deadline = asyncio.get_running_loop().time() + timeout
        checked = 0
        async with self._changed:
            while True:
                while checked < len(self.events):
                    event = self.events[checked]
                    checked += 1
                    if predicate(event):
                        return event
                    if event["event"] == "fatal":
                        raise JsOfficerError(f"officer failed: {event.get('message')}\n{self.stderr_tail()}")
                if self._exited:
                    raise JsOfficerError(
                        f"officer process (pid {self.pid}) exited with {self._proc and self._proc.returncode} "
                        f"before the awaited event arrived\n{self.stderr_tail()}"
                    )
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise JsOfficerError(
                        f"no matching officer event within {timeout}s; last events: "
                        f"{self.events[-5:]}\n{self.stderr_tail()}"
                    )
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass

    async def wait_for_event(self, name: str, timeout: float = 60, **fields: Any) -> Event:
        """First event called ``name`` whose fields equal ``fields``."""
        return await self.wait_for(
            lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items()), timeout
        )

    async def send(self, room_id: str, body: str, timeout: float = 60) -> str:
        """Send an m.text (encrypted by the SDK in encrypted rooms); returns its event ID."""
        ref = uuid.uuid4().hex
        self._last_sent[room_id] = body
        await self._command({"cmd": "send", "room_id": room_id, "body": body, "ref": ref})
        result = await self.wait_for(lambda e: e.get("ref") == ref and e["event"] in ("sent", "error"), timeout)
        if result["event"] == "error":
            raise JsOfficerError(f"send to {room_id} failed: {result.get('message')}")
        return result["event_id"]

    async def shield(self, room_id: str, event_id: str, timeout: float = 60) -> dict[str, Any]:
        """The message's shield once its sender's devices are known (what Element's timeline settles on)."""
        ref = uuid.uuid4().hex
        await self._command({"cmd": "shield", "room_id": room_id, "event_id": event_id, "ref": ref})
        result = await self.wait_for(lambda e: e.get("ref") == ref and e["event"] in ("shield", "error"), timeout)
        if result["event"] == "error":
            raise JsOfficerError(f"shield of {event_id} failed: {result.get('message')}")
        return result

    def stderr_tail(self, lines: int = 60) -> str:
        tail = list(self._stderr_tail)[-lines:]
        return "officer stderr (last lines):\n" + "\n".join(tail) if tail else "(officer stderr empty)"

    # ------------------------------------------------------------------ internals
    async def _command(self, obj: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise JsOfficerError(f"officer process is not running\n{self.stderr_tail()}")
        proc.stdin.write(json.dumps(obj).encode() + b"\n")
        await proc.stdin.drain()

    async def _send_again_if_asked(self, event: Event) -> None:
        """What an officer does when the bot says it could not decrypt their message: /discardsession, then
        send it again (the homeserver's to-device push can skip a room key meant for the appservice's bot;
        bench/README.md)."""
        room_id = event.get("room_id")
        if (event.get("event") == "message" and room_id in self._last_sent and self._resent.get(room_id, 0) < 2
                and event.get("body") == UNDECRYPTABLE_REPLY.format(sender=self.user_id)):
            self._resent[room_id] = self._resent.get(room_id, 0) + 1
            # Not awaited here: this runs in the stdout reader, which must go on to read the answers.
            self._tasks.append(asyncio.create_task(self._discard_and_send(room_id, self._last_sent[room_id])))

    async def _discard_and_send(self, room_id: str, body: str) -> None:
        ref = uuid.uuid4().hex
        await self._command({"cmd": "discard_session", "room_id": room_id, "ref": ref})
        await self.wait_for(lambda e: e.get("ref") == ref and e["event"] in ("discarded", "error"), 60)
        await self._command({"cmd": "send", "room_id": room_id, "body": body, "ref": uuid.uuid4().hex})

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                text = line.decode(errors="replace").strip()
                if not text:
                    continue
                try:
                    event = json.loads(text)
                except json.JSONDecodeError:
                    self._stderr_tail.append(f"[officer_client] non-JSON stdout line: {text}")
                    continue
                if not isinstance(event, dict) or "event" not in event:
                    self._stderr_tail.append(f"[officer_client] unexpected stdout line: {text}")
                    continue
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
                await self._send_again_if_asked(event)
        finally:
            await self._proc.wait()
            async with self._changed:
                self._exited = True
                self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        sink = self.stderr_path.open("a", encoding="utf-8") if self.stderr_path else None
        try:
            while line := await self._proc.stderr.readline():
                text = line.decode(errors="replace").rstrip("\n")
                self._stderr_tail.append(text)
                if sink:
                    sink.write(text + "\n")
                    sink.flush()
        finally:
            if sink:
                sink.close()
