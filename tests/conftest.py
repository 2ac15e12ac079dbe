"""Fixtures: a real Synapse on a free loopback port and the real bridge process, once per session.

The registration Synapse loads is the output of ``python -m bridge
generate-registration``, so every integration test also shows Synapse accepts it.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bridge.localhs import LocalSynapse, free_port
from tests.support.bridge_process import BridgeProcess
from tests.support.officer import NioOfficer

ROOT = Path(__file__).parents[1]
SERVER = "localhost"
PASSWORD = "officer-password-1"
OFFICERS = {"central": "officer1", "nightshift": "officer2", "interop": "jsofficer", "autodesk": "officer3",
            "timers": "officer5", "closed": "officer6"}
SUPERVISOR = "supervisor1"
# Users who are not officers of the agency they try to act in.
OTHERS = {"autodesk2": "officer4", "intruder": "intruder"}
TEST_AGENCY_SETTINGS = {
    # Old chats of earlier tests stay open; a cap would make later claims fail.
    "central": {"max_chats_per_officer": 1000, "supervisors": [f"@{SUPERVISOR}:{SERVER}"],
                "canned": {"hello": "Hello, this is the police. How can we help?"},
                "emergency": {"en": ["knife", "help me"], "fr": ["au secours"]}},
    "nightshift": {"max_chats_per_officer": 1000},
    "interop": {"max_chats_per_officer": 1000},
    "autodesk": {"routing": "auto", "max_chats_per_officer": 1, "supervisors": [f"@{SUPERVISOR}:{SERVER}"],
                 "officers": [f"@officer3:{SERVER}", f"@officer4:{SERVER}"], "present_officers_as": "Officer {n}"},
    "timers": {"max_chats_per_officer": 1000, "supervisors": [f"@{SUPERVISOR}:{SERVER}"],
               "timeouts": {"unclaimed_seconds": 3, "unanswered_seconds": 6, "visitor_idle_seconds": 4,
                            "visitor_idle_close_seconds": 4}},
    "closed": {"hours": {"timezone": "UTC", "weekly": {}}, "max_chats_per_officer": 1000},
}


@dataclass
class MatrixEnv:
    dir: Path
    synapse: LocalSynapse
    config_path: Path
    registration_path: Path
    config: dict
    bridge: BridgeProcess

    @property
    def public_url(self) -> str:
        return self.config["web"]["public_url"]

    def officer_id(self, agency: str) -> str:
        return f"@{({**OFFICERS, **OTHERS, 'supervisor': SUPERVISOR})[agency]}:{SERVER}"

    @property
    def db_path(self) -> Path:
        return self.dir / "precinct.db"


def write_bridge_config(dir: Path, hs_url: str) -> tuple[Path, dict]:
    web_port, as_port = free_port(), free_port()
    config = {
        "homeserver": {"url": hs_url, "server_name": SERVER},
        "appservice": {"id": "precinct", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}", "max_message_chars": 4000},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "crypto": {"pickle_key": "placeholder", "undecryptable_wait_seconds": 6},
        "chats": {"puppet_pool_size": 2},
        "agencies": [{"id": a, "name": f"{a.title()} Police", "officers": [f"@{o}:{SERVER}"],
                      **TEST_AGENCY_SETTINGS.get(a, {})} for a, o in OFFICERS.items()],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "central"},
                   {"id": "lost-property", "label": "Lost property", "agency": "central"},
                   {"id": "night", "label": "Night desk", "agency": "nightshift"},
                   {"id": "interop", "label": "Interop", "agency": "interop"},
                   {"id": "auto", "label": "Automatic desk", "agency": "autodesk"},
                   {"id": "timers", "label": "Timers desk", "agency": "timers"},
                   {"id": "after-hours", "label": "After hours", "agency": "closed"}],
        "logging": {"level": "INFO"},
    }
    path = dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


@pytest.fixture(scope="session")
def matrix_env(tmp_path_factory: pytest.TempPathFactory):
    dir = tmp_path_factory.mktemp("matrix")
    hs_port = free_port()
    config_path, _ = write_bridge_config(dir, f"http://127.0.0.1:{hs_port}")
    registration = dir / "registration.yaml"
    subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(config_path),
                    "-o", str(registration)], check=True, cwd=ROOT, capture_output=True)
    config = yaml.safe_load(config_path.read_text())
    synapse = LocalSynapse(dir / "synapse", SERVER, hs_port, [registration])
    bridge = BridgeProcess(config_path, config["web"]["public_url"], dir / "bridge.log")
    try:
        synapse.start()
        for localpart in [*OFFICERS.values(), SUPERVISOR, *OTHERS.values()]:
            synapse.register_user(localpart, PASSWORD)
        bridge.start()
        yield MatrixEnv(dir, synapse, config_path, registration, config, bridge)
    finally:
        bridge.stop()
        synapse.stop()


@pytest.fixture
def bridge_log(matrix_env: MatrixEnv):
    """On failure, show the bridge's log tail."""
    yield
    # (printed by pytest only when a test fails, via captured output)
    print("---- bridge log tail ----\n" + matrix_env.bridge.tail(80))


@pytest.fixture
async def officer_of(matrix_env: MatrixEnv, tmp_path):
    """``await officer_of("central")``: a started encrypted nio officer of that agency, stopped after the test.

    It claims every chat whose new dispatch notice it reads (``auto_claim=False`` for tests of claiming)."""
    started: list[NioOfficer] = []

    async def make(agency: str, auto_claim: bool = True) -> NioOfficer:
        o = NioOfficer(matrix_env.synapse.url, matrix_env.officer_id(agency), PASSWORD,
                       tmp_path / f"officer-{agency}-{len(started)}")
        o.auto_claim = lambda number: auto_claim
        started.append(o)
        await o.start()
        return o

    yield make
    for o in started:
        await o.stop()
