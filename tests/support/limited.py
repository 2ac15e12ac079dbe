"""A second bridge, on a Synapse of its own, with tight admission limits (issue 10).

The session's shared bridge serves ~100 tests that all start chats from 127.0.0.1, so its limits are
loose and nothing there can show a limit biting.  This one has limits a test reaches in a handful of
requests (``TIGHT``: a burst of a few, then one token an hour, so nothing refills while a test runs)
and ``web.trusted_proxies`` set to ``PROXY``.  Token buckets live in the bridge's memory:
``restart(**limits)`` starts the bridge afresh (the same store and Synapse) with the given
``limits.*`` overrides, so every test begins with full buckets.  Stopping the bridge writes the
open windows of repeated refusals to the audit trail, so a test can read their counts.

Every process is stopped by PID (``stop``).
"""
from __future__ import annotations

import copy
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.localhs import LocalSynapse, free_port

from .bridge_process import BridgeProcess

ROOT = Path(__file__).parents[2]
SERVER = "localhost"
PASSWORD = "officer-password-1"
PROXY = "127.0.0.90"                # the reverse proxy the bridge trusts
PHONE = "101"
HOUR = 1                            # one token an hour: nothing refills during a test
TIGHT = {
    "chats_per_address": {"burst": 3, "per_hour": HOUR},
    "chats_overall": {"burst": 1000, "per_hour": HOUR},
    "offline_messages_per_address": {"burst": 2, "per_hour": HOUR},
    "offline_messages_overall": {"burst": 5, "per_hour": HOUR},
    "uploads_per_address": {"burst": 2, "per_hour": HOUR},
    "uploads_overall": {"burst": 1000, "per_hour": HOUR},
    "console_sign_ins_per_address": {"burst": 3, "per_hour": HOUR},
    "console_sign_ins_overall": {"burst": 6, "per_hour": HOUR},
}


@dataclass
class LimitedEnv:
    dir: Path
    synapse: LocalSynapse
    config_path: Path
    config: dict
    bridge: BridgeProcess
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        return self.config["web"]["public_url"]

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.config['metrics']['port']}/metrics"

    @property
    def db_path(self) -> Path:
        return self.dir / "precinct.db"

    def restart(self, **limits: dict[str, Any]) -> None:
        """The bridge afresh (full buckets), with ``TIGHT`` overridden by ``limits``."""
        self.bridge.stop(timeout=120)
        self.limits = {**TIGHT, **limits}
        config = copy.deepcopy(self.config)
        config["limits"] = self.limits
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.config = config
        self.bridge.start()

    def stop_bridge(self) -> None:
        """Stop it (writing the open refusal windows to the audit trail); ``restart`` brings it back."""
        self.bridge.stop(timeout=120)          # a graceful stop, however busy the machine: never SIGKILL here
        assert self.bridge.proc is not None and self.bridge.proc.returncode == 0, self.bridge.tail()

    def rows(self, sql: str, args: list | tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, list(args)).fetchall()
        finally:
            conn.close()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) FROM {table}")[0][0]


def write_config(dir: Path, hs_url: str) -> tuple[Path, dict]:
    web_port, as_port, metrics_port = free_port(), free_port(), free_port()
    config = {
        "homeserver": {"url": hs_url, "server_name": SERVER},
        "appservice": {"id": "precinct", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}", "trusted_proxies": [PROXY]},
        "site": {"phone_number": PHONE, "emergency_number": "999"},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "metrics": {"port": metrics_port},
        "crypto": {"pickle_key": "placeholder"},
        "chats": {"puppet_pool_size": 1, "max_waiting_per_agency": 0},
        "limits": TIGHT,
        "agencies": [{"id": "central", "name": "Central Police", "officers": [f"@officer1:{SERVER}"],
                      "supervisors": [f"@supervisor1:{SERVER}"]}],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "central"}],
        "logging": {"level": "INFO"},
    }
    path = dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


def start(dir: Path) -> LimitedEnv:
    """Synapse (with the bridge's registration) and the bridge; the caller stops both with ``stop``."""
    hs_port = free_port()
    config_path, _ = write_config(dir, f"http://127.0.0.1:{hs_port}")
    registration = dir / "registration.yaml"
    subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(config_path),
                    "-o", str(registration)], check=True, cwd=ROOT, capture_output=True)
    config = yaml.safe_load(config_path.read_text())
    synapse = LocalSynapse(dir / "synapse", SERVER, hs_port, [registration])
    bridge = BridgeProcess(config_path, config["web"]["public_url"], dir / "bridge.log")
    env = LimitedEnv(dir, synapse, config_path, config, bridge, dict(TIGHT))
    try:
        synapse.start()
        synapse.register_user("officer1", PASSWORD)
        synapse.register_user("supervisor1", PASSWORD)
        bridge.start()
    except BaseException:
        stop(env)
        raise
    return env


def stop(env: LimitedEnv) -> None:
    env.bridge.stop()
    env.synapse.stop()
