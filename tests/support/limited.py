"""A third bridge on the session's Synapse, with tight admission limits (issue 10).

The session's shared bridge serves ~100 tests that all start chats from 127.0.0.1, so its limits are
loose (``LOOSE_LIMITS``) and nothing there can show a limit biting.  This one has limits a test reaches
in a handful of requests (``TIGHT``: a burst of a few, then one token an hour, so nothing refills while
a test runs) and ``web.trusted_proxies`` set to ``PROXY``.  Token buckets live in the bridge's memory:
``restart(**limits)`` starts the bridge afresh (the same store) with the given ``limits.*`` overrides,
so every test begins with full buckets.  Stopping the bridge writes the open windows of repeated
refusals to the audit trail, so a test can read their counts.

Its appservice registration (id ``precinct-limited``, bot ``@limitbot``, puppets ``@limitchat_…``) is
written with the shared one in tests/conftest.py, so Synapse loads it at start; the process is started
by the first test that needs it and stopped by PID at the end of the session.
"""
from __future__ import annotations

import copy
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.devtools.localhs import free_port

from .bridge_process import BridgeEnv, BridgeProcess, prepared
from tests.support.configs import crypto_section, write_registered

OFFICER = "limitofficer"            # named in its agency, never signed in: no test's officer sees its rooms
PROXY = "127.0.0.90"                # the reverse proxy the bridge trusts
PHONE = "101"
HOUR = 1                            # one token an hour: nothing refills during a test
# For the other bridges of the test session (the shared one, the proof-of-work one): every test starts its
# chats (and console sign-ins) from 127.0.0.1, so their limits are far beyond what the suite asks for.
# bench/abuse.py drops the section to measure the product's own.
LOOSE = {"burst": 100_000, "per_hour": 3_600_000}
LOOSE_LIMITS = {f"{what}_{scope}": LOOSE for what in ("chats", "offline_messages", "uploads", "console_sign_ins")
                for scope in ("per_address", "overall")}
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
class LimitedEnv(BridgeEnv):
    dir: Path
    config_path: Path
    config: dict
    bridge: BridgeProcess
    limits: dict[str, Any] = field(default_factory=dict)

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


def prepare(dir: Path, hs_url: str, server: str) -> Path:
    """Its config and registration (written by ``generate-registration``); the registration's path."""
    dir.mkdir(parents=True, exist_ok=True)
    web_port, as_port, metrics_port = free_port(), free_port(), free_port()
    config = {
        "homeserver": {"url": hs_url, "server_name": server},
        "appservice": {"id": "precinct-limited", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder", "bot_localpart": "limitbot",
                       "puppet_prefix": "limitchat_"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}", "trusted_proxies": [PROXY]},
        "site": {"phone_number": PHONE, "emergency_number": "999"},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "metrics": {"port": metrics_port},
        "crypto": crypto_section(),
        "chats": {"puppet_pool_size": 0, "max_waiting_per_agency": 0},
        "limits": TIGHT,
        "agencies": [{"id": "limitdesk", "name": "Limited Desk Police", "officers": [f"@{OFFICER}:{server}"],
                      "max_chats_per_officer": 1000}],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "limitdesk"}],
        "logging": {"level": "INFO"},
    }
    return write_registered(dir, config)


def env(dir: Path) -> LimitedEnv:
    """The prepared bridge, not yet started (``restart`` starts it)."""
    config_path, config, bridge = prepared(dir)
    return LimitedEnv(dir, config_path, config, bridge, dict(TIGHT))
