"""A bridge behind Debian's nginx running config/nginx-precinct.conf, the sample operators install (issue 12).

The bridge (appservice id ``precinct-proxied``, bot ``@proxybot``, puppets ``@proxychat_…``) is registered
with Synapse at the start of the session (tests/conftest.py), with ``web.trusted_proxies: [127.0.0.1]`` (the
address nginx connects from), ``web.public_url`` the https URL of nginx on ``[::1]`` and the default 10 MiB
attachment limit.  Browsers reach nginx on ``[::1]``, so the address the bridge should record for them (``::1``)
differs from the proxy's: seeing ``::1`` means the forwarded address was believed, from the proxy only.

nginx runs with the sample config *rendered*: the placeholders the sample names (listen ports, server_name,
certificate paths, upstream address, log path) are replaced, each exactly once, and nothing else is changed.
It is included from a minimal main config, as Debian's /etc/nginx/nginx.conf includes conf.d/, whose only
other contents are the temporary paths of this run.  The certificate is a throw-away self-signed one made
with ``openssl`` for this run.  nginx is a child process (``daemon off``) on free loopback ports, stopped by
PID; the package's own service, if any, is never touched.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bridge.devtools.localhs import free_port

from .bridge_process import BridgeEnv, BridgeProcess
from .limited import LOOSE_LIMITS
from tests.support.configs import crypto_section, write_registered

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "config" / "nginx-precinct.conf"
NGINX = "/usr/sbin/nginx"
OFFICER = "proxyofficer"
SUPERVISOR = "proxysupervisor"
PROXY = "127.0.0.1"                 # nginx's address towards the bridge
HOST = "::1"                        # where browsers reach nginx: a client address other than the proxy's
AGENCY_HOST = "127.0.0.6"           # the agency's own site embedding the widget, another origin
ATTACHMENT_LIMIT = 10 * 1024 * 1024


@dataclass
class ProxiedEnv(BridgeEnv):
    dir: Path
    config_path: Path
    config: dict
    bridge: BridgeProcess
    nginx: "NginxProcess"

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.config['web']['port']}"


def prepare(dir: Path, hs_url: str, server: str) -> Path:
    """Config (with nginx's port) and registration; the registration's path."""
    dir.mkdir(parents=True, exist_ok=True)
    web_port, as_port, metrics_port = free_port(), free_port(), free_port()
    https_port, http_port = free_port(HOST), free_port(HOST)
    from tests.integration.test_attachments import tiny_png
    (dir / "logo.png").write_bytes(tiny_png())
    config = {
        "homeserver": {"url": hs_url, "server_name": server},
        "appservice": {"id": "precinct-proxied", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder", "bot_localpart": "proxybot",
                       "puppet_prefix": "proxychat_"},
        "web": {"port": web_port, "public_url": f"https://[{HOST}]:{https_port}", "trusted_proxies": [PROXY],
                "embed_origins": [f"http://{AGENCY_HOST}:{free_port(AGENCY_HOST)}"]},
        "site": {"phone_number": "101", "emergency_number": "999", "logo": str(dir / "logo.png"),
                 "primary_color": "#5a2d82"},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "metrics": {"port": metrics_port},
        "crypto": crypto_section(),
        "chats": {"puppet_pool_size": 0, "max_waiting_per_agency": 0},
        "attachments": {"max_bytes": ATTACHMENT_LIMIT},
        "limits": LOOSE_LIMITS,
        "agencies": [{"id": "proxydesk", "name": "Proxied Desk Police", "officers": [f"@{OFFICER}:{server}"],
                      "supervisors": [f"@{SUPERVISOR}:{server}"], "max_chats_per_officer": 1000}],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "proxydesk"}],
        "logging": {"level": "INFO"},
        "nginx_test": {"https_port": https_port, "http_port": http_port},
    }
    (dir / "ports.yaml").write_text(yaml.safe_dump(config.pop("nginx_test")))
    return write_registered(dir, config)


def self_signed(dir: Path) -> tuple[Path, Path]:
    """A throw-away certificate for ::1 and 127.0.0.1, made by openssl for this run."""
    cert, key = dir / "fullchain.pem", dir / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=precinct-test",
                    "-addext", "subjectAltName=IP:::1,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def render(sample: str, *, https_port: int, http_port: int, upstream_port: int, cert: Path, key: Path,
           access_log: Path) -> str:
    """The sample with its placeholders replaced (each must occur exactly as many times as expected)."""
    replacements = [
        ("    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n", 1),
        ("    listen [::]:80;\n", f"    listen [{HOST}]:{http_port};\n", 1),
        ("    listen 443 ssl;\n", f"    listen 127.0.0.1:{https_port} ssl;\n", 1),
        ("    listen [::]:443 ssl;\n", f"    listen [{HOST}]:{https_port} ssl;\n", 1),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};", 1),
        ("/etc/ssl/precinct/fullchain.pem", str(cert), 1),
        ("/etc/ssl/precinct/privkey.pem", str(key), 1),
        ("access_log /var/log/nginx/precinct.access.log", f"access_log {access_log}", 1),
    ]
    for old, new, count in replacements:
        found = sample.count(old)
        assert found == count, f"the sample config has {found} × {old!r}, expected {count}: update render()"
        sample = sample.replace(old, new)
    return sample


MAIN_CONF = """\
# The run's main config, as Debian's /etc/nginx/nginx.conf: temporary paths, then the sample, rendered.
{user}
error_log {dir}/error.log notice;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/precinct.conf;
}}
"""


class NginxProcess:
    """Debian's nginx with the rendered sample, as a child process (``daemon off``), stopped by PID."""

    def __init__(self, dir: Path, https_port: int, http_port: int, upstream_port: int) -> None:
        self.dir, self.https_port, self.http_port, self.upstream_port = dir, https_port, http_port, upstream_port
        self.proc: subprocess.Popen | None = None

    def write(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed(self.dir)
        (self.dir / "precinct.conf").write_text(render(
            SAMPLE.read_text(), https_port=self.https_port, http_port=self.http_port,
            upstream_port=self.upstream_port, cert=cert, key=key, access_log=self.dir / "access.log"))
        # As root, workers would otherwise drop to www-data, who cannot enter pytest's private temp folders.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(MAIN_CONF.format(dir=self.dir, user=user))
        return conf

    def start(self, timeout: float = 30) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError(f"{NGINX} is missing: `make test` installs Debian's nginx (apt-get install nginx)")
        conf = self.write()
        args = [NGINX, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log"),
                "-g", f"daemon off; pid {self.dir}/nginx.pid;"]
        check = subprocess.run([*args[:-2], "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        log = open(self.dir / "nginx.out", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection((HOST, self.https_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx not listening after {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGQUIT)         # graceful: the master stops its workers
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        out = []
        for name in ("nginx.out", "error.log"):
            path = self.dir / name
            if path.exists():
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)


def env(dir: Path) -> ProxiedEnv:
    config_path = dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    ports = yaml.safe_load((dir / "ports.yaml").read_text())
    bridge = BridgeProcess(config_path, f"http://127.0.0.1:{config['web']['port']}", dir / "bridge.log")
    nginx = NginxProcess(dir / "nginx", ports["https_port"], ports["http_port"], config["web"]["port"])
    return ProxiedEnv(dir, config_path, config, bridge, nginx)

