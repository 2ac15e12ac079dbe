"""A second bridge on the session's Synapse with the proof-of-work gate on (the shared bridge keeps it off).

Its appservice registration (id ``precinct-pow``, bot ``@powbot``, puppets ``@powchat_…``) is written
with the shared one in tests/conftest.py, so Synapse loads both at start; the process itself is
started by the first test that needs it and stopped by PID at the end of the session.

Small numbers so that tests are quick and still show each rule: 8 bits asked normally, at most 12,
one bit more per refused creation, halving every second, challenges valid 5 s. The "powfull" agency
takes one waiting chat: the next is refused busy, which is what raises the difficulty.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.devtools.localhs import free_port

from .bridge_process import BridgeEnv, BridgeProcess, prepared
from .limited import LOOSE_LIMITS
from tests.support.configs import crypto_section, write_registered

POW_HOST = "127.0.0.2"          # the agency site that embeds this bridge's widget
OFFICER = "powofficer"          # named in its agencies, never signed in: no test's officer sees its rooms
POW = {"enabled": True, "base_bits": 8, "max_bits": 12, "refusals_per_bit": 1.0, "half_life_seconds": 1.0,
       "challenge_seconds": 5}


@dataclass
class PowBridgeEnv(BridgeEnv):
    """What tests (and tests/browser's CitizenPage) need of it: the same names as MatrixEnv's."""
    dir: Path
    config: dict
    bridge: BridgeProcess


def prepare(dir: Path, hs_url: str, server: str) -> Path:
    """Config and registration (written by ``generate-registration``); the registration's path."""
    dir.mkdir(parents=True, exist_ok=True)
    web_port, as_port, metrics_port = free_port(), free_port(), free_port()
    officer = f"@{OFFICER}:{server}"
    config = {
        "homeserver": {"url": hs_url, "server_name": server},
        "appservice": {"id": "precinct-pow", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder", "bot_localpart": "powbot",
                       "puppet_prefix": "powchat_"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}",
                "embed_origins": [f"http://{POW_HOST}:{free_port(POW_HOST)}"]},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "metrics": {"port": metrics_port},
        "crypto": crypto_section(),
        "chats": {"puppet_pool_size": 0, "max_waiting_per_agency": 0},
        "proof_of_work": POW,
        "limits": LOOSE_LIMITS,         # its tests start their chats from 127.0.0.1 (limits: limited.py)
        "agencies": [{"id": "powdesk", "name": "Pow Desk Police", "officers": [officer],
                      "max_chats_per_officer": 1000},
                     {"id": "powfull", "name": "Small Queue Police", "officers": [officer], "max_waiting_chats": 1}],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "powdesk"},
                   {"id": "full", "label": "Small queue", "agency": "powfull"}],
        "logging": {"level": "INFO"},
    }
    return write_registered(dir, config)


def env(dir: Path) -> PowBridgeEnv:
    """The prepared bridge, not yet started."""
    _, config, bridge = prepared(dir)
    return PowBridgeEnv(dir, config, bridge)
