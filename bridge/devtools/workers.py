"""Synapse as production runs it, on this machine: PostgreSQL, Redis, a main process and workers.

:class:`LocalSynapseWorkers` has :class:`~bridge.devtools.localhs.LocalSynapse`'s interface (same
constructor, ``start``/``stop``, ``url``, ``register_user``, ``query``/``execute`` on its database), so
the tests and benchmarks run against either (``PRECINCT_HOMESERVER=workers`` picks this one: see
:func:`homeserver_class`). What it starts, every process a child stopped by its PID:

- PostgreSQL from Debian's packages: a throw-away cluster (``initdb``) listening only on a unix socket
  in its own folder. Postgres refuses to run as root, so as root the cluster belongs to Debian's
  ``postgres`` user (made by the ``postgresql`` package) and lives in a private folder of the system's
  temp directory (pytest's temp folders are root's, mode 0700: that user could not enter them); it is
  kept across ``stop``/``start`` (a homeserver restart keeps its data) and removed by :meth:`close`.
- Redis (Debian's ``redis-server``) on a free 127.0.0.1 port, nothing saved to disk: the replication
  channel between the Synapse processes.
- Synapse's main process, and four generic workers (Synapse's docs, "Scaling synapse via workers"):
  ``client1`` serves the client and federation endpoints the docs list for generic workers,
  ``persister1`` writes the ``events`` stream (``stream_writers``), ``appservice1`` sends appservice
  transactions (``notify_appservices_from_worker``), ``fedsender1`` sends federation
  (``federation_sender_instances``). The main process keeps the other streams (to-device, typing,
  receipts, presence, device lists, account data) and the admin API.
- Debian's nginx in front, on ``port`` (and, with ``federation_port``, with TLS on the federation
  address), routing each documented worker endpoint to ``client1`` and everything else to main.

:class:`LocalSynapsePostgres` (``PRECINCT_HOMESERVER=postgres``) is the same cluster under one Synapse process alone:
the database changed and nothing else, for benchmarks that ask what SQLite costs.

Start-up waits for conditions only (the socket answers, ``/health``, the client API through nginx).
Nothing binds or contacts an address outside 127.0.0.0/8.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from bridge.devtools.localhs import LOOPBACK, LocalSynapse, free_port

__all__ = ["LocalSynapseWorkers", "LocalSynapsePostgres", "homeserver_class", "HOMESERVER_ENV", "WORKERS"]

#: Environment variable that picks the homeserver of the tests and benchmarks: ``single`` (default), ``postgres``
#: or ``workers``.
HOMESERVER_ENV = "PRECINCT_HOMESERVER"
NGINX = "/usr/sbin/nginx"
REDIS = "/usr/bin/redis-server"
PG_USER = "postgres"          # Debian's postgresql package makes this system user
DB_ROLE = "synapse"
DB_NAME = "synapse"
#: The workers and what each does (the duties are set in the shared homeserver.yaml).
WORKERS = ("client1", "persister1", "appservice1", "fedsender1")
_POLL = 0.1
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Endpoints Synapse's docs list for generic workers, less those of the streams main still writes
# (devices and key uploads: device_lists; sendToDevice: to_device; typing, receipts, presence, tags,
# account data, push rules). Everything not matched here goes to main.
CLIENT_WORKER_ROUTES = (
    r"^/_matrix/client/(r0|v3)/sync$",
    r"^/_matrix/client/(api/v1|r0|v3)/events$",
    r"^/_matrix/client/(api/v1|r0|v3)/initialSync$",
    r"^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/publicRooms$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/joined_members$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/context/.*$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/members$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state$",
    r"^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
    r"^/_matrix/client/(r0|v3|unstable)/account/whoami$",
    r"^/_matrix/client/versions$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/event/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/joined_rooms$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/search$",
    r"^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/directory/room/.*$",
    r"^/_matrix/client/(r0|v3|unstable)/capabilities$",
    r"^/_matrix/client/(r0|v3|unstable)/keys/query$",
    r"^/_matrix/client/(r0|v3|unstable)/keys/changes$",
    r"^/_matrix/client/(r0|v3|unstable)/keys/claim$",
    r"^/_matrix/client/(r0|v3|unstable)/room_keys/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/login$",
    r"^/_matrix/client/(r0|v3|unstable)/register$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/redact",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/send",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/join/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/profile/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/messages$",
    r"^/_matrix/client/(r0|v3|unstable)/user_directory/search$",
)
FEDERATION_WORKER_ROUTES = (
    r"^/_matrix/federation/v1/version$",
    r"^/_matrix/federation/v1/event/",
    r"^/_matrix/federation/v1/state/",
    r"^/_matrix/federation/v1/state_ids/",
    r"^/_matrix/federation/v1/backfill/",
    r"^/_matrix/federation/v1/get_missing_events/",
    r"^/_matrix/federation/v1/publicRooms",
    r"^/_matrix/federation/v1/query/",
    r"^/_matrix/federation/v1/make_join/",
    r"^/_matrix/federation/v1/make_leave/",
    r"^/_matrix/federation/(v1|v2)/send_join/",
    r"^/_matrix/federation/(v1|v2)/send_leave/",
    r"^/_matrix/federation/(v1|v2)/invite/",
    r"^/_matrix/federation/v1/event_auth/",
    r"^/_matrix/federation/v1/user/devices/",
    r"^/_matrix/key/v2/query",
    r"^/_matrix/federation/v1/send/",
)


def homeserver_class() -> type[LocalSynapse]:
    """The homeserver the environment asks for (``PRECINCT_HOMESERVER``): one process on SQLite, or workers."""
    kind = os.environ.get(HOMESERVER_ENV, "single").strip().lower() or "single"
    if kind == "single":
        return LocalSynapse
    if kind == "workers":
        return LocalSynapseWorkers
    if kind == "postgres":
        return LocalSynapsePostgres
    raise ValueError(f"{HOMESERVER_ENV}={kind!r}: expected 'single', 'postgres' or 'workers'")


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them in /usr/lib/postgresql/<version>/bin, off the PATH."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]), reverse=True)
    for d in dirs:
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is missing: `make` installs Debian's postgresql package")
    return found


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux's default when unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _port_answers(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _with_descendants(pid: int | None) -> list[int]:
    """``pid`` and every process below it (from /proc), e.g. PostgreSQL's backends; [] for None."""
    if pid is None:
        return []
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue          # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _pyformat(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg2's ``%s`` (a literal ``%``, as in LIKE patterns, doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


@dataclass
class _Child:
    """One process of the topology: its name, Popen and the file its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def stop(self, timeout: float) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:   # its own session: take any children it left (postgres backends) with it
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        else:
            self.proc.wait()


@dataclass
class LocalSynapseWorkers(LocalSynapse):
    """Synapse on PostgreSQL with Redis and workers behind nginx, on 127.0.0.1 only (see the module's doc).

    ``port`` is nginx's client port, so ``url`` is what clients and the bridge use, as with
    :class:`LocalSynapse`; ``federation_port`` (on ``federation_host``) is nginx's TLS federation port.
    """

    _children: list[_Child] = field(default_factory=list, init=False, repr=False, compare=False)
    _ports: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- where things live ----------------------------------------------------

    @property
    def _postgres_dir_record(self) -> Path:
        return self.data_dir / "postgres-dir"

    @property
    def postgres_dir(self) -> Path:
        """The cluster's folder (data and unix socket), made on the first start."""
        record = self._postgres_dir_record
        if record.exists():
            return Path(record.read_text().strip())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="precinct-pg-"))
        record.write_text(str(path))
        return path

    @property
    def _pg_user(self) -> str | None:
        """Whom postgres runs as: Debian's ``postgres`` user when we are root (postgres refuses root)."""
        return PG_USER if os.geteuid() == 0 else None

    def _pg_run_kwargs(self) -> dict[str, Any]:
        user = self._pg_user
        if user is None:
            return {}
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise RuntimeError(f"no {user!r} user to run PostgreSQL as: `make` installs Debian's postgresql "
                               "package, which makes it") from None
        return {"user": user, "group": user, "extra_groups": []}

    @property
    def worker_log_paths(self) -> dict[str, Path]:
        return {name: self.data_dir / f"{name}.log" for name in WORKERS}

    @property
    def log_paths(self) -> list[Path]:
        return [self.log_path, *self.worker_log_paths.values()]

    @property
    def pids(self) -> dict[str, int]:
        """Every running process of the topology by name (``main``, the workers, ``postgres``, ``redis``, ``nginx``)."""
        return {c.name: c.proc.pid for c in self._children if c.proc.poll() is None}

    @property
    def synapse_pids(self) -> list[int]:
        """The Synapse processes (main and workers) that are running: what a benchmark counts as the homeserver."""
        return [pid for name, pid in self.pids.items() if name == "main" or name in WORKERS]

    @property
    def description(self) -> str:
        return f"Synapse main + {len(WORKERS)} workers, PostgreSQL, Redis, nginx"

    def process_groups(self) -> dict[str, list[int]]:
        """Running processes by what they are: Synapse (main and workers), PostgreSQL (with its backends,
        children of the postmaster), Redis, nginx (with its worker)."""
        pids = self.pids
        return {"Synapse": self.synapse_pids,
                "PostgreSQL": _with_descendants(pids.get("postgres")),
                "Redis": _with_descendants(pids.get("redis")),
                "nginx": _with_descendants(pids.get("nginx"))}

    @property
    def pid(self) -> int | None:
        """PID of the main Synapse process while the whole topology runs, else None."""
        pids = self.pids
        if "main" not in pids or len(pids) < len(self._children):
            return None
        return pids["main"]

    # -- configuration ----------------------------------------------------------

    def _allocate_ports(self) -> None:
        """Free ports below the kernel's ephemeral range for the internal listeners: the workers bind theirs
        seconds after the choice, and a port from that range (free_port's) can meanwhile become the local end of
        one of the machine's outgoing connections (seen: the event persister's 'Address already in use')."""
        chosen: dict[str, int] = {}
        for name in ("main", "replication", "redis", *WORKERS):
            for _ in range(200):
                port = secrets.randbelow(_ephemeral_low() - 20000) + 20000
                if port not in chosen.values() and _bindable(port):
                    chosen[name] = port
                    break
            else:
                chosen[name] = free_port()
        self._ports = chosen

    def _instance_settings(self, config: dict[str, Any]) -> dict[str, Any]:
        settings = super()._instance_settings(config)
        ports = self._ports
        settings["listeners"] = [
            {"port": ports["main"], "type": "http", "tls": False, "bind_addresses": [LOOPBACK], "x_forwarded": True,
             "resources": [{"names": ["client", "federation"], "compress": False}]},
            {"port": ports["replication"], "type": "http", "tls": False, "bind_addresses": [LOOPBACK],
             "resources": [{"names": ["replication"], "compress": False}]},
        ]
        settings["database"] = self._database_settings()
        settings["redis"] = {"enabled": True, "host": LOOPBACK, "port": ports["redis"]}
        settings["worker_replication_secret"] = config.get("worker_replication_secret") or secrets.token_urlsafe(32)
        settings["instance_map"] = {
            "main": {"host": LOOPBACK, "port": ports["replication"]},
            "persister1": {"host": LOOPBACK, "port": ports["persister1"]},
        }
        settings["stream_writers"] = {"events": ["persister1"]}
        settings["notify_appservices_from_worker"] = "appservice1"
        settings["federation_sender_instances"] = ["fedsender1"]
        return settings

    def _database_settings(self) -> dict[str, Any]:
        return {"name": "psycopg2", "args": {"user": DB_ROLE, "database": DB_NAME, "host": str(self.postgres_dir),
                                             "cp_min": 2, "cp_max": 10}}

    def _write_workers(self) -> None:
        """One config and one log config per worker, beside the shared homeserver.yaml."""
        with self.config_path.open(encoding="utf-8") as fh:
            shared = yaml.safe_load(fh)
        with open(shared["log_config"], encoding="utf-8") as fh:
            log_config = yaml.safe_load(fh)
        for name in WORKERS:
            worker_log = dict(log_config, handlers=dict(log_config["handlers"]))
            worker_log["handlers"]["file"] = dict(log_config["handlers"]["file"],
                                                  filename=str(self.worker_log_paths[name]))
            log_path = self.data_dir / f"{name}.log.config"
            log_path.write_text(yaml.safe_dump(worker_log, sort_keys=False))
            names = {"client1": ["client", "federation"], "persister1": ["replication"]}.get(name, ["health"])
            worker = {
                "worker_app": "synapse.app.generic_worker",
                "worker_name": name,
                "worker_listeners": [{"type": "http", "port": self._ports[name], "bind_addresses": [LOOPBACK],
                                      "x_forwarded": True, "resources": [{"names": names, "compress": False}]}],
                "worker_log_config": str(log_path),
            }
            (self.data_dir / f"{name}.yaml").write_text(yaml.safe_dump(worker, sort_keys=False))

    def _nginx_config(self) -> Path:
        folder = self.data_dir / "nginx"
        folder.mkdir(exist_ok=True)
        ports = self._ports

        def routes(patterns: tuple[str, ...]) -> str:
            return "".join(f"        location ~ {p} {{ proxy_pass http://client1; }}\n" for p in patterns)

        common = ("        client_max_body_size 60m;\n        proxy_read_timeout 600s;\n"
                  "        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n"
                  "        proxy_set_header Host $host;\n        proxy_set_header X-Forwarded-For $remote_addr;\n")
        servers = (f"    server {{\n        listen {LOOPBACK}:{self.port};\n{common}"
                   f"        proxy_set_header X-Forwarded-Proto http;\n{routes(CLIENT_WORKER_ROUTES)}"
                   f"        location / {{ proxy_pass http://main; }}\n    }}\n")
        if self.federation_port is not None:
            cert, key = self._ensure_tls_certificate()
            servers += (f"    server {{\n        listen {self.federation_host}:{self.federation_port} ssl;\n"
                        f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n{common}"
                        f"        proxy_set_header X-Forwarded-Proto https;\n{routes(FEDERATION_WORKER_ROUTES)}"
                        f"        location / {{ proxy_pass http://main; }}\n    }}\n")
        user = "user root;\n" if os.geteuid() == 0 else ""   # else workers drop to www-data, locked out of data_dir
        temp = "".join(f"    {kind}_temp_path {folder}/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = folder / "nginx.conf"
        conf.write_text(
            "# Written by bridge/devtools/workers.py: the router in front of Synapse's main process and workers.\n"
            f"{user}worker_processes 1;\nerror_log {folder}/error.log notice;\npid {folder}/nginx.pid;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n{temp}    access_log {folder}/access.log;\n"
            f"    upstream main {{ server {LOOPBACK}:{ports['main']}; keepalive 32; }}\n"
            f"    upstream client1 {{ server {LOOPBACK}:{ports['client1']}; keepalive 32; }}\n"
            f"{servers}}}\n")
        return conf

    # -- processes ----------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], log: Path, stop_signal: int = signal.SIGTERM,
               **kwargs: Any) -> _Child:
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, **kwargs)
        child = _Child(name, proc, log, stop_signal)
        self._children.append(child)
        return child

    def _wait(self, children: list[_Child], ready: Callable[[], bool], what: str, deadline: float) -> None:
        while not ready():
            for child in children:
                code = child.proc.poll()
                if code is not None:
                    raise RuntimeError(f"{child.name} exited with {code} while starting\n"
                                       f"--- {child.log} (end) ---\n{_tail(child.log)}")
            if time.monotonic() >= deadline:
                logs = "".join(f"--- {c.log} (end) ---\n{_tail(c.log)}\n" for c in children)
                raise RuntimeError(f"{what} not ready in time\n{logs}")
            time.sleep(_POLL)

    def _start_postgres(self, deadline: float) -> None:
        folder = self.postgres_dir
        data = folder / "data"
        kwargs = self._pg_run_kwargs()
        if kwargs:
            shutil.chown(folder, kwargs["user"], kwargs["group"])
        folder.chmod(0o700)
        log = self.data_dir / "postgres.log"
        if not (data / "PG_VERSION").exists():
            result = subprocess.run(
                [_postgres_bin("initdb"), "-D", str(data), "-U", DB_ROLE, "--auth=trust", "--encoding=UTF8",
                 "--locale=C", "--no-sync"],
                cwd=folder, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, **kwargs)
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        child = self._spawn(
            "postgres",
            [_postgres_bin("postgres"), "-D", str(data), "-k", str(folder), "-c", "listen_addresses=",
             "-c", "unix_socket_permissions=0700", "-c", "logging_collector=off"],
            log, signal.SIGINT, cwd=folder, **kwargs)   # SIGINT: postgres's "fast" shutdown
        self._wait([child], lambda: self._database_ready(), "PostgreSQL", deadline)

    def _connect(self, database: str = DB_NAME) -> Any:
        import psycopg2   # in the test extras (psycopg2-binary), as Synapse itself needs it here

        return psycopg2.connect(host=str(self.postgres_dir), user=DB_ROLE, dbname=database, connect_timeout=5)

    def _database_ready(self) -> bool:
        """True once the cluster answers and Synapse's database (UTF-8, C collation, as Synapse requires) exists."""
        import psycopg2

        try:
            conn = self._connect("postgres")
        except psycopg2.OperationalError:
            return False
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME])
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {DB_NAME} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                                "TEMPLATE template0")
        finally:
            conn.close()
        return True

    def _synapse_args(self, name: str) -> list[str]:
        if name == "main":
            return [self.python, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]
        return [self.python, "-m", "synapse.app.generic_worker", "-c", str(self.config_path),
                "-c", str(self.data_dir / f"{name}.yaml")]

    def start(self, timeout: float = 180) -> None:
        """Start PostgreSQL, Redis, Synapse's main process, its workers and nginx; wait until clients get answers.

        Raises RuntimeError (with the end of the failing process's log) if one exits or is not ready within
        ``timeout`` seconds; everything started is stopped then. A listener whose port was taken meanwhile
        makes it start again on other ports (at most 3 attempts).
        """
        for attempt in range(3):
            try:
                self._start_once(timeout)
                return
            except RuntimeError as err:
                if "Address already in use" not in str(err) or attempt == 2:
                    raise

    def _start_once(self, timeout: float) -> None:
        if self.pids:
            raise RuntimeError(f"homeserver {self.server_name} is already running: {self.pids}")
        for program in (NGINX, REDIS):
            if not os.access(program, os.X_OK):
                raise RuntimeError(f"{program} is missing: `make` installs Debian's nginx and redis-server")
        deadline = time.monotonic() + timeout
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._allocate_ports()
            self.write_config()
            self._write_workers()
            self._start_postgres(deadline)
            redis_dir = self.data_dir / "redis"
            redis_dir.mkdir(exist_ok=True)
            redis = self._spawn("redis", [REDIS, "--bind", LOOPBACK, "--port", str(self._ports["redis"]),
                                          "--save", "", "--appendonly", "no", "--dir", str(redis_dir)],
                                self.data_dir / "redis.log")
            self._wait([redis], lambda: _redis_pong(self._ports["redis"]), "Redis", deadline)
            main = self._spawn("main", self._synapse_args("main"), self.console_path, cwd=self.data_dir)
            main_url = f"http://{LOOPBACK}:{self._ports['main']}"
            self._wait([main], lambda: _http_ok(f"{main_url}/_matrix/client/versions"), "Synapse main", deadline)
            workers = [self._spawn(name, self._synapse_args(name), self.data_dir / f"{name}.console.log",
                                   cwd=self.data_dir) for name in WORKERS]
            for worker in workers:
                url = f"http://{LOOPBACK}:{self._ports[worker.name]}/health"
                self._wait([worker], lambda url=url: _http_ok(url), f"Synapse worker {worker.name}", deadline)
            conf = self._nginx_config()
            folder = conf.parent
            check = subprocess.run([NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log"), "-t"],
                                   capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            if check.returncode != 0:
                raise RuntimeError(f"nginx refuses {conf}:\n{check.stderr}")
            nginx = self._spawn("nginx", [NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log"),
                                          "-g", "daemon off;"], folder / "nginx.out", signal.SIGQUIT)
            checks = [lambda: _http_ok(f"{self.url}/_matrix/client/versions") and _http_ok(f"{self.url}/health")]
            if self.federation_port is not None:
                checks.append(lambda: _port_answers(self.federation_port, self.federation_host))
            self._wait([nginx], lambda: all(check() for check in checks), "nginx in front of Synapse", deadline)
            dead = [c for c in self._children if c.proc.poll() is not None]
            if dead:
                raise RuntimeError("exited while the others started: " + "".join(
                    f"{c.name} ({c.proc.returncode})\n--- {c.log} (end) ---\n{_tail(c.log)}\n" for c in dead))
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 20) -> None:
        """Stop every process, last started first (nginx, workers, main, Redis, PostgreSQL). Idempotent.

        The database stays (a later ``start`` finds it); :meth:`close` removes it."""
        children, self._children = self._children, []
        errors: list[BaseException] = []
        for child in reversed(children):
            try:
                child.stop(timeout)
            except Exception as err:     # stop the others anyway
                errors.append(err)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Stop everything and remove the PostgreSQL cluster's folder (outside ``data_dir`` when root)."""
        self.stop()
        record = self._postgres_dir_record
        if record.exists():
            shutil.rmtree(Path(record.read_text().strip()), ignore_errors=True)
            record.unlink()

    def __enter__(self) -> LocalSynapseWorkers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- its database ---------------------------------------------------------------

    def query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement on the homeserver's database (``?`` placeholders, as in SQLite)."""
        conn = self._connect()
        try:
            conn.set_session(readonly=True, autocommit=True)
            with conn.cursor() as cur:
                cur.execute(_pyformat(sql), list(params))
                return [tuple(row) for row in cur.fetchall()]
        finally:
            conn.close()

    def execute(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> int:
        """Run one writing statement (``?`` placeholders) in its own transaction; the number of rows it changed."""
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(_pyformat(sql), list(params))
                return int(cur.rowcount)
        finally:
            conn.close()


class LocalSynapsePostgres(LocalSynapseWorkers):
    """One Synapse process on PostgreSQL, on 127.0.0.1 only: the smallest set-up Synapse's docs call fit for
    production (SQLite is for testing). Against :class:`LocalSynapse` it changes the database alone, so a
    benchmark run on both tells what Synapse's single SQLite connection costs; no Redis, workers or nginx.
    The PostgreSQL cluster is :class:`LocalSynapseWorkers`'s (a child process, its folder removed by ``close``).
    """

    @property
    def worker_log_paths(self) -> dict[str, Path]:
        return {}

    @property
    def description(self) -> str:
        return "one Synapse process, PostgreSQL"

    def process_groups(self) -> dict[str, list[int]]:
        return {"Synapse": self.synapse_pids, "PostgreSQL": _with_descendants(self.pids.get("postgres"))}

    def _instance_settings(self, config: dict[str, Any]) -> dict[str, Any]:
        settings = LocalSynapse._instance_settings(self, config)   # its listeners: the client port, federation's TLS
        settings["database"] = self._database_settings()
        return settings

    def _start_once(self, timeout: float) -> None:
        if self.pids:
            raise RuntimeError(f"homeserver {self.server_name} is already running: {self.pids}")
        deadline = time.monotonic() + timeout
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.write_config()
            self._start_postgres(deadline)
            main = self._spawn("main", self._synapse_args("main"), self.console_path, cwd=self.data_dir)
            checks = [lambda: _http_ok(f"{self.url}/_matrix/client/versions")]
            if self.federation_port is not None:
                checks.append(lambda: _port_answers(self.federation_port, self.federation_host))
            self._wait([main], lambda: all(check() for check in checks), "Synapse", deadline)
        except BaseException:
            self.stop()
            raise
