"""``python -m bridge demo``: the whole service on this machine, for trying it out.

Everything lives in one data directory and is reused on the next run::

    data_dir/
      config.yaml          the bridge's configuration (made once from the schema's example, real secrets)
      registration.yaml    the appservice registration Synapse loads (same tokens every run)
      officer-login.txt    the demo officer's Element login (password made on the first run)
      demo-state.json      what the demo set up once (the agency room)
      synapse/             the local Synapse: its config, keys, SQLite database, media and logs
      precinct.db, crypto/ the bridge's store and the visitor devices' encryption state
      bridge.log           the bridge's log
      demo.lock            held (flock) while a demo runs here: a second demo on this folder is refused
      synapse.pid          Synapse's PID while it runs, so a demo after one that was killed can stop it

Synapse runs as a child process (127.0.0.1 only, server name ``localhost``) and
the bridge runs in this process.  Ctrl-C, SIGTERM or SIGHUP stop the bridge
first, then Synapse (by PID), and the command exits with 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
import traceback
import urllib.parse
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

import yaml

from .. import config as cfg
from .localhs import LocalSynapse, free_port, request_json
from ..private_files import private_dir, tighten_tree, write_private

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SERVER_NAME = "localhost"
OFFICER_LOCALPART = "officer"
OFFICER_DISPLAY_NAME = "PC Demo"
AGENCY_ID = "demo"
AGENCY_NAME = "Demo Police"
AGENCY_ROOM_NAME = "Demo Police — officers"
TOPICS = [("general", "General enquiry"), ("lost-property", "Lost property"), ("noise", "Noise complaint")]
PREFERRED_PORTS = {"homeserver": 8008, "web": 8080, "appservice": 29330, "metrics": 29331}
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"   # no 0/o, 1/l/i: easy to type into Element


class DemoError(Exception):
    """A setup problem, worded for the person running the demo."""


class _Stop(BaseException):
    """A stop signal arrived while setting up (BaseException: nothing on the way may swallow it)."""


def say(*parts: object, err: bool = False) -> None:
    """Print for the person running the demo; a closed terminal or pipe must not stop the clean-up."""
    try:
        print(*parts, file=sys.stderr if err else sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


# ---- files in the data directory ------------------------------------------------------------------

class DemoFiles:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir.resolve()
        self.config = self.dir / "config.yaml"
        self.registration = self.dir / "registration.yaml"
        self.login = self.dir / "officer-login.txt"
        self.state = self.dir / "demo-state.json"
        self.synapse = self.dir / "synapse"
        self.synapse_pid = self.dir / "synapse.pid"
        self.lock = self.dir / "demo.lock"
        self.bridge_log = self.dir / "bridge.log"

    def read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise DemoError(f"{self.state} is damaged ({e}); delete it and run again (the agency room is made anew)")
        return data if isinstance(data, dict) else {}

    def write_state(self, state: dict[str, Any]) -> None:
        write_private(self.state, json.dumps(state, indent=2) + "\n")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Only one demo per data directory (two would share one SQLite database and one set of ports)."""
    fh = lock_path.open("w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DemoError(f"another demo is already running with {lock_path.parent}; stop it first "
                            "(Ctrl-C in its terminal)")
        yield
    finally:
        fh.close()


# ---- ports ----------------------------------------------------------------------------------------

def port_free(port: int) -> bool:
    """True if a listener could bind 127.0.0.1:``port`` now (as Synapse and aiohttp do, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int | None, taken: set[int]) -> int:
    """``preferred`` if it is free, otherwise any free loopback port; never one in ``taken``."""
    if preferred and preferred not in taken and port_free(preferred):
        return preferred
    while (port := free_port()) in taken:
        pass
    return port


# ---- the bridge configuration ----------------------------------------------------------------------

def port_values(ports: dict[str, int]) -> dict[str, Any]:
    """The configuration keys that follow from the demo's ports (all on loopback)."""
    return {"homeserver.url": f"http://{LOOPBACK}:{ports['homeserver']}",
            "appservice.bind_host": LOOPBACK, "appservice.port": ports["appservice"],
            "appservice.url": f"http://{LOOPBACK}:{ports['appservice']}",
            "web.bind_host": LOOPBACK, "web.port": ports["web"], "web.public_url": f"http://{LOOPBACK}:{ports['web']}",
            "metrics.bind_host": LOOPBACK, "metrics.port": ports["metrics"]}


def demo_config_text(ports: dict[str, int]) -> str:
    """The example configuration from the schema with the demo's values, fresh secrets included."""
    from ..appservice.registration import new_tokens

    as_token, hs_token = new_tokens()
    # The demo officer is the agency's supervisor too, so `!console` to the bot opens the supervisor console.
    values = {**port_values(ports), "homeserver.server_name": SERVER_NAME,
              "appservice.as_token": as_token, "appservice.hs_token": hs_token,
              "crypto.pickle_key": secrets.token_hex(32),
              "agencies": [{"id": AGENCY_ID, "name": AGENCY_NAME, "officers": [f"@{OFFICER_LOCALPART}:{SERVER_NAME}"],
                            "supervisors": [f"@{OFFICER_LOCALPART}:{SERVER_NAME}"]}],
              "topics": [{"id": tid, "label": label, "agency": AGENCY_ID} for tid, label in TOPICS]}
    return ("# Made by `python -m bridge demo` from the example configuration; kept between runs.\n"
            + cfg.render_example(values))


def port_overrides(ports: dict[str, int]) -> dict[str, str]:
    """Moved ports for one run, as the configuration's own environment overrides (config.yaml stays as the
    person left it: no rewriting of a file they may have edited)."""
    return {cfg.env_name(path): str(value) for path, value in port_values(ports).items()}


def _configured_ports(config: cfg.Config) -> dict[str, int]:
    hs_port = urllib.parse.urlsplit(config.get("homeserver.url")).port
    return {"homeserver": hs_port or 0,
            "appservice": config.get("appservice.port"), "web": config.get("web.port"),
            "metrics": config.get("metrics.port")}


def choose_ports(preferred: dict[str, int]) -> dict[str, int]:
    taken: set[int] = set()
    ports = {}
    for name in ("homeserver", "web", "appservice", "metrics"):
        ports[name] = pick_port(preferred.get(name), taken)
        taken.add(ports[name])
    return ports


def prepare_data_dir(files: DemoFiles) -> None:
    """The data folder, owner-only: made 0700, and an older demo's folder (made under a looser umask
    before secrets at rest were owner-only) narrowed so its secrets are private and it keeps working."""
    try:
        private_dir(files.dir)
        if tightened := tighten_tree(files.dir):
            say(f"Made {tightened} files and folders in {files.dir} readable by you only.")
    except OSError as e:
        raise DemoError(f"cannot create the data directory {files.dir}: {e}")


def ensure_config(files: DemoFiles, free_ports: bool = False) -> cfg.Config:
    """Create config.yaml and registration.yaml on the first run; later keep them, moving only busy ports
    (for that run, through the configuration's environment overrides).

    ``free_ports``: the first run takes ports the system says are free rather than 8008, 8080, …, so a
    demo started by a test never races a person's demo (or another test) for the usual ones."""
    from ..appservice.registration import registration

    if not files.config.exists():
        ports = choose_ports({} if free_ports else PREFERRED_PORTS)
        draft = files.dir / "config.yaml.new"
        write_private(draft, demo_config_text(ports))
        cfg.load_file(draft)                                  # validated before it becomes config.yaml
        os.replace(draft, files.config)                       # only a complete config ever becomes config.yaml
        say(f"Created {files.config} (new secrets) and {files.registration}.")
    config = cfg.load_file(files.config)
    old = _configured_ports(config)
    ports = choose_ports(old)
    if ports != old:
        moved = ", ".join(f"{name} {old[name]} → {ports[name]}" for name in ports if ports[name] != old[name])
        say(f"Ports in use by something else, moved for this run: {moved} ({files.config.name} is unchanged).")
        config = cfg.load_file(files.config, environ={**os.environ, **port_overrides(ports)})
    if config.get("homeserver.server_name") != SERVER_NAME:
        raise DemoError(f"{files.config} is for server {config.get('homeserver.server_name')!r}, the demo's "
                        f"Synapse is {SERVER_NAME!r}; use another --data directory")
    # Same tokens as before; rewritten so the appservice URL follows a moved port.
    text = yaml.safe_dump(registration(config), sort_keys=False)
    if not files.registration.exists() or files.registration.read_text(encoding="utf-8") != text:
        write_private(files.registration, text)
    return config


# ---- the officer's login -------------------------------------------------------------------------

def _new_password() -> str:
    return "-".join("".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(5)) for _ in range(4))


def ensure_officer_login(files: DemoFiles, hs_url: str) -> str:
    """The officer's password: made on the first run, saved before the account exists, reused after."""
    password = None
    if files.login.exists():
        try:
            data = yaml.safe_load(files.login.read_text(encoding="utf-8")) or {}
            password = data.get("password") if isinstance(data, dict) else None
        except yaml.YAMLError:
            password = None
        if not isinstance(password, str) or not password:
            raise DemoError(f"{files.login} has no password line; restore it, or delete {files.dir} to start over")
    password = password or _new_password()
    login = {"homeserver": hs_url, "user_id": f"@{OFFICER_LOCALPART}:{SERVER_NAME}", "password": password}
    write_private(files.login, "# The demo officer's login for Element (custom homeserver). Made on the first\n"
                                "# run of the demo; the account in synapse/ has this password.\n"
                   + yaml.safe_dump(login, sort_keys=False))
    return password


def officer_session(hs_url: str, password: str) -> str:
    """Log the officer in (a short-lived device); return the access token."""
    status, body = request_json("POST", f"{hs_url}/_matrix/client/v3/login", {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OFFICER_LOCALPART},
        "password": password,
        "initial_device_display_name": "Precinct demo setup (logged out again)",
    })
    if status == 403:
        raise DemoError(f"the officer account exists in Synapse but does not accept the password in "
                        f"officer-login.txt (was the file replaced?). Delete the data directory to start over.")
    if status != 200 or "access_token" not in body:
        raise DemoError(f"officer login failed: HTTP {status} {body}")
    return str(body["access_token"])


def remove_unused_devices(hs_url: str, token: str, password: str) -> None:
    """Delete the officer's devices that never synced and have no name.

    Synapse's shared-secret registration logs the new account in, which leaves
    such a device behind; Element would list it as an unverified session.
    """
    status, body = request_json("GET", f"{hs_url}/_matrix/client/v3/devices", token=token)
    if status != 200:
        return
    unused = [d["device_id"] for d in body.get("devices", [])
              if d.get("last_seen_ts") is None and not d.get("display_name")]
    if unused:
        request_json("POST", f"{hs_url}/_matrix/client/v3/delete_devices", {
            "devices": unused,
            "auth": {"type": "m.login.password", "password": password,
                     "identifier": {"type": "m.id.user", "user": OFFICER_LOCALPART}},
        }, token=token)


def ensure_agency_room(hs_url: str, token: str, files: DemoFiles, state: dict[str, Any]) -> str:
    """The officers' own encrypted room, made once so the officer has a home in Element."""
    room_id = state.get("agency_room_id")
    if isinstance(room_id, str) and room_id:
        return room_id
    status, body = request_json("POST", f"{hs_url}/_matrix/client/v3/createRoom", {
        "preset": "private_chat",
        "name": AGENCY_ROOM_NAME,
        "topic": "The demo officers' room. Citizens' chats arrive as invitations to new rooms.",
        "initial_state": [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
        ],
    }, token=token)
    if status != 200 or "room_id" not in body:
        raise DemoError(f"creating the room {AGENCY_ROOM_NAME!r} failed: HTTP {status} {body}")
    state["agency_room_id"] = body["room_id"]
    files.write_state(state)
    return str(body["room_id"])


def logout(hs_url: str, token: str) -> None:
    with contextlib.suppress(OSError):
        request_json("POST", f"{hs_url}/_matrix/client/v3/logout", {}, token=token)


# ---- Synapse ---------------------------------------------------------------------------------------

class DemoSynapse(LocalSynapse):
    """LocalSynapse whose process ignores SIGINT.

    Ctrl-C in a terminal signals the whole foreground process group; if Synapse
    got it too it would shut down while the bridge is still stopping.  An
    ignored SIGINT survives exec (and then neither Python nor Twisted install a
    handler), so SIGINT is ignored from the end of ``write_config`` (just
    before ``start`` spawns Synapse) until Synapse has been spawned.  Synapse is
    stopped by PID with SIGTERM.
    """

    on_spawned: Callable[[], None] = staticmethod(lambda: None)

    def write_config(self) -> Path:
        path = super().write_config()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return path

    def _wait_ready(self, deadline: float) -> None:
        self.on_spawned()                  # spawned: Ctrl-C may stop the demo again
        super()._wait_ready(deadline)


def stop_leftover_synapse(files: DemoFiles) -> None:
    """A Synapse left running on this data directory by a demo that was killed (SIGKILL): stop it."""
    try:
        pid = int(files.synapse_pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    if "synapse.app.homeserver" in cmdline and str(files.synapse / "homeserver.yaml") in cmdline:
        say(f"Stopping the Synapse left running by an earlier demo run (pid {pid})…")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    files.synapse_pid.unlink(missing_ok=True)


# ---- the bridge --------------------------------------------------------------------------------------

def _setup_logging(config: cfg.Config, path: Path) -> list[logging.Handler]:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(fmt)
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(fmt)
    root = logging.getLogger()
    root.setLevel(config.get("logging.level"))
    root.addHandler(to_file)
    root.addHandler(to_console)
    logging.getLogger("nio").setLevel(logging.WARNING)
    from ..matrix.crypto import quiet_routine_nio_lines
    quiet_routine_nio_lines()
    return [to_file, to_console]


async def run_bridge(config: cfg.Config, synapse: LocalSynapse, after_start: Callable[[], None],
                     on_ready: Callable[[], None], stop_requested: Callable[[], bool] = lambda: False) -> int:
    """Run the bridge until a stop signal (0) or until something fails (1).

    ``after_start`` (blocking; run in a thread) does the homeserver-side setup once
    the bridge's appservice listener is up, so Synapse can deliver what it causes
    (device-list changes) instead of queueing it for a bridge that is not there.
    """
    from ..app import Bridge

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if stop_requested():          # a signal that came before the loop took the handlers over
        stop.set()

    async def synapse_died() -> None:
        while synapse.pid is not None:
            await asyncio.sleep(1)

    async def start() -> None:
        await bridge.start()
        await bridge.connecting        # the demo's Synapse is up: its bot and rooms before the banner
        # A thread cannot be cancelled: shield it so a stop signal waits for it to finish.
        await asyncio.shield(asyncio.to_thread(after_start))

    bridge = Bridge(config)
    starting = asyncio.create_task(start())
    stopping = asyncio.create_task(stop.wait())
    watchdog = asyncio.create_task(synapse_died())
    code = 0
    try:
        await asyncio.wait({starting, stopping, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is None and not stop.is_set():
            on_ready()
            await asyncio.wait({stopping, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        elif starting.done() and starting.exception() is not None:
            err = starting.exception()
            log.error("start-up failed", exc_info=err)
            raise err  # type: ignore[misc]    # run_demo reports it, after the bridge has stopped
        if watchdog.done() and not stop.is_set():
            say(f"\nSynapse stopped unexpectedly; see {synapse.console_path} and {synapse.log_path}.",
                err=True)
            code = 1
    finally:
        say("Stopping the bridge…")
        for task in (starting, stopping, watchdog):
            task.cancel()
        await asyncio.gather(starting, stopping, watchdog, return_exceptions=True)
        stopping_bridge = asyncio.create_task(bridge.stop())
        done, _ = await asyncio.wait({stopping_bridge}, timeout=3)
        if not done:
            say("Waiting for open chat pages to disconnect (can take up to a minute)…")
        try:
            await stopping_bridge
        except Exception:
            log.exception("error while stopping the bridge")
    return code


def officer_setup(synapse: LocalSynapse, password: str, files: DemoFiles) -> None:
    """The officer's account (idempotent) and, once, the agency room.

    The officer is only logged in (a short-lived device, logged out again) when
    the room has to be made, so later runs do not touch the officer's devices.
    """
    synapse.register_user(OFFICER_LOCALPART, password)
    state = files.read_state()
    if state.get("agency_room_id"):
        return
    token = officer_session(synapse.url, password)
    try:
        remove_unused_devices(synapse.url, token, password)
        user_id = urllib.parse.quote(f"@{OFFICER_LOCALPART}:{SERVER_NAME}")
        request_json("PUT", f"{synapse.url}/_matrix/client/v3/profile/{user_id}/displayname",
                     {"displayname": OFFICER_DISPLAY_NAME}, token=token)   # citizens see this name
        ensure_agency_room(synapse.url, token, files, state)
    finally:
        logout(synapse.url, token)


# ---- run_demo ----------------------------------------------------------------------------------------

def _banner(config: cfg.Config, synapse: LocalSynapse, password: str, files: DemoFiles) -> str:
    citizen = config.get("web.public_url").rstrip("/") + "/chat"
    officer = f"@{OFFICER_LOCALPART}:{SERVER_NAME}"
    console = ""
    if any(officer in a.supervisors for a in config.agencies):
        console = (f"\n 3. Supervisor console: in Element, start a direct chat with\n"
                   f"    @{config.get('appservice.bot_localpart')}:{SERVER_NAME} and send !console; the bot answers with a\n"
                   f"    one-time sign-in link (reports, transcripts, search, legal hold).")
    return f"""
────────────────────────────────────────────────────────────────────────────
 Precinct demo is running
────────────────────────────────────────────────────────────────────────────
 Citizen chat page        {citizen}
 Homeserver (for Element) {synapse.url}
 Officer user ID          @{OFFICER_LOCALPART}:{SERVER_NAME}
 Officer password         {password}

 1. Officer: sign in with Element (https://app.element.io or Element
    Desktop) on this machine. Choose to edit the homeserver ("Sign in to
    another server" / custom homeserver), enter {synapse.url}, then
    the user name "{OFFICER_LOCALPART}" and the password above. If the browser
    asks whether Element may reach devices on your local network, allow it.
    The room "{AGENCY_ROOM_NAME}" is the officer's own; accept the invitation
    to "Dispatch — {AGENCY_NAME}", where the bridge's bot shows the queue.
 2. Citizen: open the chat page in another browser window and start a chat.
    Its notice appears in the dispatch room: react to it (or type !claim and
    its number there), accept the chat room's invitation, and reply.{console}

 Data and logs: {files.dir}  (login saved in {files.login.name};
 bridge log {files.bridge_log.name}, Synapse log synapse/homeserver.log)
 Press Ctrl-C to stop.
────────────────────────────────────────────────────────────────────────────
""".rstrip("\n")


def run_demo(data_dir: Path, free_ports: bool = False) -> int:
    """Run Synapse and the bridge from ``data_dir`` until Ctrl-C / SIGTERM. Returns the exit code.

    ``free_ports``: see :func:`ensure_config`."""
    files = DemoFiles(Path(data_dir))
    phase = {"name": "setup"}
    requested = {"stop": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if phase["name"] == "setup":
            raise _Stop(signum)
        if phase["name"] == "running":        # until run_bridge's own handlers are in place
            requested["stop"] = True
            return
        say("Still stopping, please wait…", err=True)

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def install_handlers() -> None:
        for sig in SIGNALS:
            signal.signal(sig, on_signal)

    install_handlers()
    synapse: DemoSynapse | None = None
    handlers: list[logging.Handler] = []
    code = 0
    with contextlib.ExitStack() as held:
        try:
            if importlib.util.find_spec("synapse") is None:
                raise DemoError(f"the demo needs Synapse in this Python ({sys.executable}): "
                                "pip install 'matrix-synapse>=1.163' (or: pip install -e '.[test]')")
            prepare_data_dir(files)
            held.enter_context(_exclusive(files.lock))   # released last, after Synapse has stopped
            stop_leftover_synapse(files)                  # before choosing ports: it may hold ours
            config = ensure_config(files, free_ports)
            password = ensure_officer_login(files, config.get("homeserver.url").rstrip("/"))
            state = files.read_state()

            fresh = not (files.synapse / "homeserver.db").exists()
            if fresh and state.pop("agency_room_id", None):
                files.write_state(state)                  # a new Synapse database: the old room is gone
            synapse = DemoSynapse(files.synapse, SERVER_NAME, _configured_ports(config)["homeserver"],
                                  registration_paths=[files.registration])
            synapse.on_spawned = install_handlers  # type: ignore[method-assign]
            say(f"Starting Synapse on {synapse.url} ({'first run: generating its keys, ' if fresh else ''}"
                  "a few seconds)…")
            try:
                synapse.start()
            finally:
                install_handlers()
            write_private(files.synapse_pid, f"{synapse.pid}\n")

            say("Starting the bridge…")
            handlers = _setup_logging(config, files.bridge_log)
            banner = _banner(config, synapse, password, files)
            phase["name"] = "running"
            hs = synapse
            code = asyncio.run(run_bridge(config, hs, lambda: officer_setup(hs, password, files),
                                          lambda: say(banner), lambda: requested["stop"]))
        except _Stop:
            say("\nStopped during setup.", err=True)
        except (DemoError, cfg.ConfigError, RuntimeError, OSError, ValueError) as e:
            say(f"\nThe demo could not start: {e}", err=True)
            if handlers:
                say(f"(details in {files.bridge_log})", err=True)
            code = 1
        except Exception as e:
            log.exception("demo failed")
            say(f"\nThe demo failed unexpectedly: {e!r}\n{traceback.format_exc()}", err=True)
            code = 1
        finally:
            phase["name"] = "stopping"
            install_handlers()                            # asyncio puts the default handlers back
            if synapse is not None:
                if synapse.pid is not None:
                    say("Stopping Synapse…")
                synapse.stop()
                files.synapse_pid.unlink(missing_ok=True)
            for handler in handlers:
                logging.getLogger().removeHandler(handler)
                handler.close()
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if code == 0:
        say("Demo stopped.")
    return code
