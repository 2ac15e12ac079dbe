"""A fourth bridge on the session's Synapse, run under a low open-files limit (issue 11).

Its process starts with RLIMIT_NOFILE at ``OPEN_FILES`` soft and hard, so raising the soft limit at
start-up changes nothing and the bridge must cope with what it has: keep a reserve for the chats already
open, answer new ones "busy", never fail. The registration (id ``precinct-lowfd``, bot ``@lowfdbot``,
puppets ``@lowfdchat_…``) is written with the shared one in tests/conftest.py so Synapse loads it at start;
the process is started by the test that needs it and stopped by PID at the end of the session.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.devtools.localhs import free_port

from .bridge_process import BridgeEnv, BridgeProcess, prepared
from tests.support.configs import crypto_section, write_registered

OFFICER = "lowfdofficer"
PHONE = "101"
OPEN_FILES = 192                  # reserve: 64 (an eighth of the limit, at least 64)
IDLE_UNLOAD_SECONDS = 2.0


@dataclass
class LowFdEnv(BridgeEnv):
    dir: Path
    config: dict
    bridge: BridgeProcess

    @property
    def officer_id(self) -> str:
        return f"@{OFFICER}:{self.config['homeserver']['server_name']}"


def prepare(dir: Path, hs_url: str, server: str) -> Path:
    """Its config and registration (written by ``generate-registration``); the registration's path."""
    dir.mkdir(parents=True, exist_ok=True)
    web_port, as_port, metrics_port = free_port(), free_port(), free_port()
    loose = {"burst": 100_000, "per_hour": 3_600_000}
    config = {
        "homeserver": {"url": hs_url, "server_name": server, "max_connections": 16},
        "appservice": {"id": "precinct-lowfd", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder", "bot_localpart": "lowfdbot",
                       "puppet_prefix": "lowfdchat_"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}", "max_sockets_per_address": 10_000},
        "site": {"phone_number": PHONE, "emergency_number": "999"},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "metrics": {"port": metrics_port},
        "crypto": crypto_section(idle_unload_seconds=IDLE_UNLOAD_SECONDS),
        "chats": {"puppet_pool_size": 0, "max_waiting_per_agency": 0},
        "limits": {f"{what}_{scope}": loose for what in ("chats", "offline_messages", "uploads", "console_sign_ins")
                   for scope in ("per_address", "overall")},
        "agencies": [{"id": "lowdesk", "name": "Low Files Police", "officers": [f"@{OFFICER}:{server}"],
                      "max_chats_per_officer": 1000}],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "lowdesk"}],
        "logging": {"level": "INFO"},
    }
    return write_registered(dir, config)


def env(dir: Path) -> LowFdEnv:
    """The prepared bridge, not yet started."""
    _, config, bridge = prepared(dir, open_files=OPEN_FILES)
    return LowFdEnv(dir, config, bridge)
