"""A fifth bridge on the session's Synapse, whose data folder a test wipes and restores from a backup (issue 12).

Its config and registration sit in one folder and everything it writes (store, crypto stores, records
signing key) in ``data/`` under it, as /etc/precinct and /var/lib/precinct are apart in production. The
registration (id ``precinct-restore``, bot ``@restorebot``, puppets ``@restorechat_…``) is written with the
shared one in tests/conftest.py so Synapse loads it at start; the test starts and stops the process by PID.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from bridge.devtools.localhs import free_port

from .bridge_process import BridgeProcess
from .configs import crypto_section, write_registered

OFFICER = "restoreofficer"
AGENCY = "restoredesk"


@dataclass
class RestorableEnv:
    dir: Path
    config: dict

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def public_url(self) -> str:
        return self.config["web"]["public_url"]

    @property
    def officer_id(self) -> str:
        return f"@{OFFICER}:{self.config['homeserver']['server_name']}"

    def bridge(self, config_path: Path, log: Path) -> BridgeProcess:
        return BridgeProcess(config_path, self.public_url, log)


def prepare(dir: Path, hs_url: str, server: str) -> Path:
    """Its config and registration (written by ``generate-registration``); the registration's path."""
    dir.mkdir(parents=True, exist_ok=True)
    web_port, as_port, metrics_port = free_port(), free_port(), free_port()
    loose = {"burst": 100_000, "per_hour": 3_600_000}
    config = {
        "homeserver": {"url": hs_url, "server_name": server},
        "appservice": {"id": "precinct-restore", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder", "bot_localpart": "restorebot",
                       "puppet_prefix": "restorechat_"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}"},
        "site": {"phone_number": "101"},
        "store": {"path": "data/precinct.db", "crypto_dir": "data/crypto"},
        "records": {"signing_key_path": "data/records-signing.key"},
        "metrics": {"port": metrics_port},
        "crypto": crypto_section(),
        "chats": {"puppet_pool_size": 2, "max_waiting_per_agency": 0},
        "limits": {f"{what}_{scope}": loose for what in ("chats", "offline_messages", "uploads", "console_sign_ins")
                   for scope in ("per_address", "overall")},
        "agencies": [{"id": AGENCY, "name": "Restored Police", "officers": [f"@{OFFICER}:{server}"],
                      "max_chats_per_officer": 1000, "timeouts": {"officer_absent_seconds": 0}}],
        "topics": [{"id": "general", "label": "General enquiry", "agency": AGENCY}],
        "logging": {"level": "INFO"},
    }
    return write_registered(dir, config)


def env(dir: Path) -> RestorableEnv:
    """The prepared bridge (its process is the test's to start)."""
    return RestorableEnv(dir, yaml.safe_load((dir / "config.yaml").read_text()))
