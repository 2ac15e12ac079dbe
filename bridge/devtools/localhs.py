"""Run a real Synapse homeserver on this machine, for the demo and the tests.

A :class:`LocalSynapse` keeps everything in one data directory (config,
signing key, SQLite database, media, logs) and listens on 127.0.0.1 only::

    with LocalSynapse(Path("demo-data/hs"), "localhost", free_port(),
                      registration_paths=[Path("registration.yaml")]) as hs:
        officer = hs.register_user("officer1", "secret")
        ...  # talk to hs.url

The settings laid over Synapse's generated config are kept, with the reason
for each, in ``config/demo-homeserver.yaml``. With ``federation_port`` set the
instance also gets a TLS federation listener (self-signed certificate) so two
instances named ``127.0.0.1:<federation_port>`` can federate with each other
(``federation_host`` puts that listener on another loopback address, e.g.
``127.0.0.2``, for tests where room server ACLs must tell servers apart).

Nothing here binds or contacts any address outside 127.0.0.0/8 (HTTP proxies
from the environment are ignored on purpose).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

__all__ = ["LocalSynapse", "free_port", "request_json", "TEMPLATE_PATH"]

#: The documented override settings merged over the generated homeserver.yaml.
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "config" / "demo-homeserver.yaml"   # in the checkout

LOOPBACK = "127.0.0.1"
_POLL_INTERVAL = 0.1
_LOG_TAIL_LINES = 40

# urllib honours http_proxy/https_proxy from the environment; an empty
# ProxyHandler makes sure requests to 127.0.0.1 never go anywhere else.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The federation listener has a self-signed certificate.
_INSECURE_TLS = ssl.create_default_context()
_INSECURE_TLS.check_hostname = False
_INSECURE_TLS.verify_mode = ssl.CERT_NONE
_TLS_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=_INSECURE_TLS)
)


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` (a loopback address) right now.

    The port is only reserved while this function runs; start the listener
    soon after.
    """
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"free_port only binds loopback addresses, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_loopback_url(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname
    if host != LOOPBACK:
        raise ValueError(f"only {LOOPBACK} may be contacted, not {url!r}")


def request_json(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, Any]]:
    """Make one JSON request to a local homeserver; return (status, JSON body).

    HTTP error statuses are returned, not raised; connection errors raise
    ``OSError``. ``url`` must point at 127.0.0.1.
    """
    _check_loopback_url(url)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"_raw": raw.decode(errors="replace")}
    return status, parsed if isinstance(parsed, dict) else {"_json": parsed}


def _port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, dict[str, Any]]:
    """Load the override template (sections ``always``, ``no_federation``, ``federation``)."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    for section in ("always", "no_federation", "federation"):
        if not isinstance(data.get(section, {}), dict):
            raise ValueError(f"{path}: section {section!r} must be a mapping")
    return data


@dataclass
class LocalSynapse:
    """A Synapse homeserver running as a child process, on 127.0.0.1 only."""

    data_dir: Path
    """Everything lives here: config, signing key, SQLite database, media, logs."""
    server_name: str
    """E.g. ``"localhost"``, or ``"127.0.0.1:<federation_port>"`` for federation."""
    port: int
    """Client API listener port on 127.0.0.1 (plain HTTP)."""
    registration_paths: list[Path] = field(default_factory=list)
    """Appservice registration files given to ``app_service_config_files``."""
    federation_port: int | None = None
    """When set: a TLS federation listener with a self-signed certificate."""
    federation_host: str = LOOPBACK
    """Loopback address (127.0.0.x) of the federation listener. Room server ACLs match the host of a
    server name and ignore its port, so peers that one ACL must tell apart need different hosts."""
    python: str = sys.executable
    """Interpreter that has matrix-synapse installed."""

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)
    _console: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not ipaddress.ip_address(self.federation_host).is_loopback:
            raise ValueError(f"federation_host must be a loopback address, not {self.federation_host!r}")
        self.data_dir = Path(self.data_dir).resolve()
        self.registration_paths = [Path(p).resolve() for p in self.registration_paths]

    # -- paths and addresses ------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.data_dir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log (INFO; lines may lag up to 5 s behind, Synapse buffers them)."""
        return self.data_dir / "homeserver.log"

    @property
    def console_path(self) -> Path:
        """stdout/stderr of the Synapse process (start-up and config errors land here)."""
        return self.data_dir / "console.log"

    @property
    def url(self) -> str:
        """Base URL of the client API."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def federation_url(self) -> str | None:
        return None if self.federation_port is None else f"https://{self.federation_host}:{self.federation_port}"

    @property
    def pid(self) -> int | None:
        """PID of the running Synapse process, or None when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def log_paths(self) -> list[Path]:
        """Every Synapse log of this homeserver (one here; one per process with workers)."""
        return [self.log_path]

    @property
    def synapse_pids(self) -> list[int]:
        """The Synapse processes that are running: what a benchmark counts as the homeserver."""
        return [] if self.pid is None else [self.pid]

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    # -- configuration ------------------------------------------------------

    def write_config(self) -> Path:
        """Create or update ``homeserver.yaml`` in the data dir and return its path.

        Synapse generates the config (secrets, signing key, log config) only
        the first time; the settings we own are rewritten on every call.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self._generate_config()
        with self.config_path.open(encoding="utf-8") as fh:
            config: dict[str, Any] = yaml.safe_load(fh) or {}
        if config.get("server_name") != self.server_name:
            raise ValueError(
                f"{self.config_path} is for server {config.get('server_name')!r}, "
                f"not {self.server_name!r}: use another data_dir"
            )

        template = load_template()
        config.update(copy.deepcopy(template.get("always", {})))
        section = "no_federation" if self.federation_port is None else "federation"
        config.update(copy.deepcopy(template.get(section, {})))
        config.update(self._instance_settings(config))

        with self.config_path.open("w", encoding="utf-8") as fh:
            fh.write(
                "# Generated by Synapse, then rewritten by bridge/devtools/localhs.py on every start.\n"
                "# Edit config/demo-homeserver.yaml instead of this file.\n"
            )
            yaml.safe_dump(config, fh, sort_keys=False)
        self._fix_log_config(Path(config["log_config"]))
        return self.config_path

    def _generate_config(self) -> None:
        cmd = [
            self.python, "-m", "synapse.app.homeserver",
            "--server-name", self.server_name,
            "--config-path", str(self.config_path),
            "--data-directory", str(self.data_dir),
            "--generate-config",
            "--report-stats=no",
        ]  # fmt: skip
        result = subprocess.run(
            cmd, cwd=self.data_dir, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"synapse --generate-config failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def _instance_settings(self, config: dict[str, Any]) -> dict[str, Any]:
        """Settings that depend on this instance's ports and paths."""
        listeners: list[dict[str, Any]] = [
            {
                "port": self.port,
                "type": "http",
                "tls": False,
                "bind_addresses": [LOOPBACK],  # never ::1: the machine may lack IPv6
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]
        settings: dict[str, Any] = {
            "public_baseurl": self.url + "/",
            "pid_file": str(self.data_dir / "homeserver.pid"),
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.data_dir / "homeserver.db")},
            },
            "media_store_path": str(self.data_dir / "media_store"),
            "log_config": str(
                config.get("log_config") or self.data_dir / f"{self.server_name}.log.config"
            ),
            "app_service_config_files": [str(p) for p in self.registration_paths],
            # Keep the generated secret (accounts' macs depend on it); make one if absent.
            "registration_shared_secret": config.get("registration_shared_secret")
            or secrets.token_urlsafe(32),
        }
        if self.federation_port is not None:
            cert, key = self._ensure_tls_certificate()
            listeners.append(
                {
                    "port": self.federation_port,
                    "type": "http",
                    "tls": True,
                    "bind_addresses": [self.federation_host],
                    "x_forwarded": False,
                    "resources": [{"names": ["federation"], "compress": False}],
                }
            )
            settings["tls_certificate_path"] = str(cert)
            settings["tls_private_key_path"] = str(key)
        else:  # no TLS listener: drop paths left from an earlier federation-mode run
            for key in ("tls_certificate_path", "tls_private_key_path"):
                config.pop(key, None)
        settings["listeners"] = listeners
        return settings

    def _ensure_tls_certificate(self) -> tuple[Path, Path]:
        """Create a self-signed certificate for the federation host once (openssl CLI)."""
        cert, key = self.data_dir / "federation.crt", self.data_dir / "federation.key"
        if not (cert.exists() and key.exists()):
            cmd = [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-subj", f"/CN={self.federation_host}", "-addext", f"subjectAltName=IP:{self.federation_host}",
                "-days", "3650", "-keyout", str(key), "-out", str(cert),
            ]  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                raise RuntimeError(f"openssl failed: {result.stderr}")
            key.chmod(0o600)
        return cert, key

    def _fix_log_config(self, log_config: Path) -> None:
        """Make the file handler write to ``data_dir/homeserver.log`` at INFO."""
        with log_config.open(encoding="utf-8") as fh:
            logging_config: dict[str, Any] = yaml.safe_load(fh) or {}
        changed = False
        file_handler = logging_config.get("handlers", {}).get("file")
        if file_handler is None:
            raise ValueError(f"{log_config} has no 'file' handler")
        if file_handler.get("filename") != str(self.log_path):
            file_handler["filename"] = str(self.log_path)
            changed = True
        root = logging_config.setdefault("root", {})
        if root.get("level") != "INFO":
            root["level"] = "INFO"
            changed = True
        if changed:  # only rewrite when needed: dumping drops the generated comments
            with log_config.open("w", encoding="utf-8") as fh:
                yaml.safe_dump(logging_config, fh, sort_keys=False)

    def _shared_secret(self) -> str:
        with self.config_path.open(encoding="utf-8") as fh:
            secret = (yaml.safe_load(fh) or {}).get("registration_shared_secret")
        if not secret:
            raise RuntimeError(f"no registration_shared_secret in {self.config_path}")
        return str(secret)

    # -- process ------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Write the config, start Synapse and wait until its client API answers.

        Raises RuntimeError (with the end of the logs) if Synapse exits or does
        not answer within ``timeout`` seconds; the process is stopped then.
        """
        if self.pid is not None:
            raise RuntimeError(f"Synapse for {self.server_name} is already running (pid {self.pid})")
        self.write_config()
        for host, port in ((LOOPBACK, self.port), (self.federation_host, self.federation_port)):
            if port is not None and _port_in_use(port, host):
                raise RuntimeError(f"port {port} on {host} is already in use")

        deadline = time.monotonic() + timeout
        self._console = self.console_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [self.python, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._console,
                stderr=subprocess.STDOUT,
            )
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> None:
        checks = [(_OPENER, f"{self.url}/_matrix/client/versions")]
        if self.federation_url is not None:
            checks.append((_TLS_OPENER, f"{self.federation_url}/_matrix/key/v2/server"))
        for opener, url in checks:
            while True:
                assert self._proc is not None
                code = self._proc.poll()
                if code is not None:
                    raise RuntimeError(
                        f"Synapse for {self.server_name} exited with {code} during start-up\n"
                        + self._logs_for_error()
                    )
                try:
                    with opener.open(url, timeout=2) as resp:
                        if resp.status == 200:
                            break
                except (OSError, http.client.HTTPException):
                    pass  # not listening yet, or not ready: try again
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"Synapse for {self.server_name} did not answer {url} in time\n"
                        + self._logs_for_error()
                    )
                time.sleep(_POLL_INTERVAL)

    def _logs_for_error(self) -> str:
        if self._console is not None:
            self._console.flush()
        return (
            f"--- {self.console_path} (end) ---\n{_tail(self.console_path)}\n"
            f"--- {self.log_path} (end) ---\n{_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 20) -> None:
        """Stop Synapse: SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            else:
                proc.wait()
        if self._console is not None:
            self._console.close()
            self._console = None

    def close(self) -> None:
        """Stop it for good (everything it keeps is in ``data_dir``)."""
        self.stop()

    # -- its database ---------------------------------------------------------

    def query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement on the homeserver's database (``?`` placeholders)."""
        conn = sqlite3.connect(f"file:{self.data_dir / 'homeserver.db'}?mode=ro", uri=True, timeout=30)
        try:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def execute(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> int:
        """Run one writing statement in its own transaction; the number of rows it changed."""
        conn = sqlite3.connect(self.data_dir / "homeserver.db", timeout=30)
        try:
            with conn:
                return conn.execute(sql, params).rowcount
        finally:
            conn.close()

    def __enter__(self) -> LocalSynapse:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- accounts -----------------------------------------------------------

    def register_user(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create an account with the shared-secret admin API; return its user ID.

        An account that already exists is not an error (its password is left
        as it was).
        """
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        status, body = request_json("GET", endpoint)
        if status != 200 or "nonce" not in body:
            raise RuntimeError(f"register nonce: {status} {body}")
        nonce = body["nonce"]
        mac = hmac.new(self._shared_secret().encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([
            nonce.encode(), localpart.encode(), password.encode(),
            b"admin" if admin else b"notadmin",
        ]))  # fmt: skip
        status, body = request_json(
            "POST",
            endpoint,
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        if status == 200:
            return str(body["user_id"])
        if body.get("errcode") == "M_USER_IN_USE":
            return self.user_id(localpart)
        raise RuntimeError(f"register {localpart}: {status} {body}")
