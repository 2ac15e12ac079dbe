"""Three real Synapses federating over loopback, with the real bridge on the first.

    A  127.0.0.1:<port>  the bridge's homeserver, agency "central" (officer1)
    B  127.0.0.2:<port>  agency "county" (bofficer), in federation.allowed_servers
    C  127.0.0.3:<port>  not allowed (eve): the outsider of the negative tests

Each server's federation listener is on its own loopback address because room server ACLs match
the host of a server name and ignore the port: three servers on 127.0.0.1 could not be told apart.
Settings for federating on loopback: config/demo-homeserver.yaml (section ``federation``).
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from bridge.devtools.localhs import LocalSynapse, free_port
from bridge.devtools.workers import homeserver_class

from .bridge_process import BridgeEnv, BridgeProcess
from .limited import LOOSE_LIMITS
from .officer import NioOfficer, Received
from .visitor import Visitor

ROOT = Path(__file__).parents[2]
PASSWORD = "officer-password-1"
TRANSFER_FIRST_OFFICER = "leave"
# Deadline of every wait in the federation tests: three homeservers share two CPUs with other test runs,
# and a federated join or key query can take many seconds then. Waits end as soon as the condition holds.
LONG = 180


def federating_synapse(dir: Path, host: str, registrations: list[Path] = (),  # type: ignore[assignment]
                       kind: type[LocalSynapse] = LocalSynapse) -> LocalSynapse:
    fed_port = free_port(host)
    return kind(dir, f"{host}:{fed_port}", free_port(), list(registrations), federation_port=fed_port,
                federation_host=host)


@dataclass
class FederationEnv(BridgeEnv):
    dir: Path
    a: LocalSynapse
    b: LocalSynapse
    c: LocalSynapse
    config: dict
    bridge: BridgeProcess

    @property
    def officer_a(self) -> str:
        return self.a.user_id("officer1")

    @property
    def officer_b(self) -> str:
        return self.b.user_id("bofficer")

    @property
    def outsider(self) -> str:
        return self.c.user_id("eve")


def _bridge_config(dir: Path, a: LocalSynapse, b: LocalSynapse) -> Path:
    web_port, as_port, metrics_port = free_port(), free_port(), free_port()
    config = {
        "homeserver": {"url": a.url, "server_name": a.server_name},
        "appservice": {"id": "precinct", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}"},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "metrics": {"port": metrics_port},
        "crypto": {"pickle_key": "placeholder", "undecryptable_wait_seconds": 120},
        "chats": {"puppet_pool_size": 1},
        "limits": LOOSE_LIMITS,         # its citizens all come from 127.0.0.1 (the limits: tests/support/limited.py)
        "federation": {"allowed_servers": [b.server_name]},
        "routing": {"transfer_first_officer": TRANSFER_FIRST_OFFICER},
        "agencies": [{"id": "central", "name": "Central Police", "officers": [a.user_id("officer1")]},
                     {"id": "county", "name": "County Police", "officers": [b.user_id("bofficer")]}],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "central"},
                   {"id": "county", "label": "County matters", "agency": "county"}],
        "logging": {"level": "INFO"},
    }
    path = dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def federation(dir: Path) -> Iterator[FederationEnv]:
    """Start A (with the bridge), B and C; stop everything that was started, by PID, on the way out."""
    registration = dir / "registration.yaml"
    # The bridge's homeserver is the one PRECINCT_HOMESERVER picks (workers: its federation goes through nginx, the
    # generic worker and the federation sender); the other agencies' stay single processes.
    a = federating_synapse(dir / "a", "127.0.0.1", [registration], homeserver_class())
    b = federating_synapse(dir / "b", "127.0.0.2")
    c = federating_synapse(dir / "c", "127.0.0.3")
    config_path = _bridge_config(dir, a, b)
    subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(config_path),
                    "-o", str(registration)], check=True, cwd=ROOT, capture_output=True)
    config = yaml.safe_load(config_path.read_text())
    bridge = BridgeProcess(config_path, config["web"]["public_url"], dir / "bridge.log")
    try:
        for hs in (a, b, c):
            hs.start()
        a.register_user("officer1", PASSWORD)
        b.register_user("bofficer", PASSWORD)
        c.register_user("eve", PASSWORD)
        bridge.start()
        yield FederationEnv(dir, a, b, c, config, bridge)
    finally:
        bridge.stop()
        for hs in (c, b, a):
            hs.close()


async def start_chat(visitor: Visitor, officer: NioOfficer, first: str, **fields: object) -> Received:
    """A citizen opens a chat and writes ``first``; returns it as the officer read it, once the chat is active."""
    await visitor.create(topic="general", **fields)
    await visitor.connect()
    await visitor.send(first)
    got = await officer.wait_message(lambda m: m.body == first, timeout=LONG, what="the citizen's first message")
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active", timeout=LONG)
    return got
