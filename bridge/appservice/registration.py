"""The appservice registration file the homeserver loads."""
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import yaml

from .. import config as config_module
from ..config import Config
from ..private_files import write_private


def new_tokens() -> tuple[str, str]:
    return secrets.token_hex(32), secrets.token_hex(32)


def registration(config: Config) -> dict[str, Any]:
    server = re.escape(config.get("homeserver.server_name"))
    prefix = re.escape(config.get("appservice.puppet_prefix"))
    return {
        "id": config.get("appservice.id"),
        "url": config.get("appservice.url"),
        "as_token": config.get("appservice.as_token"),
        "hs_token": config.get("appservice.hs_token"),
        "sender_localpart": config.get("appservice.bot_localpart"),
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"^@{prefix}[^:]*:{server}$"}],
            "aliases": [],
            "rooms": [],
        },
        "rate_limited": False,
        # Typing, receipts and (MSC2409) to-device events in transactions.
        "receive_ephemeral": True,
        "de.sorunome.msc2409.push_ephemeral": True,
        # MSC3202: one-time-key counts, device lists and device masquerading.
        "org.matrix.msc3202": True,
        # MSC4190: the appservice creates its users' devices itself.
        "io.element.msc4190": True,
    }


def _patch_secret(text: str, key: str, value: str) -> str:
    """Replace ``  key: …`` in the config text, keeping every comment around it."""
    pattern = re.compile(rf"^(\s+){key}:.*$", re.MULTILINE)
    if not pattern.search(text):
        raise config_module.ConfigError(f"{key} is missing from the configuration file; copy it from example-config.yaml")
    return pattern.sub(lambda m: f"{m.group(1)}{key}: {value}", text, count=1)


def generate_registration(config_path: Path, out: Path) -> None:
    text = config_path.read_text(encoding="utf-8")
    as_token, hs_token = new_tokens()
    text = _patch_secret(text, "as_token", as_token)
    text = _patch_secret(text, "hs_token", hs_token)
    raw = yaml.safe_load(text) or {}
    pickle = ((raw.get("crypto") or {}).get("pickle_key") or "")
    if not isinstance(pickle, str) or config_module.secret_problem(pickle):
        text = _patch_secret(text, "pickle_key", secrets.token_hex(32))
    config = config_module.load(yaml.safe_load(text), config_path.resolve().parent)   # validate before writing anything
    write_private(out, yaml.safe_dump(registration(config), sort_keys=False))   # both hold the tokens: 0600
    write_private(config_path, text)
    print(f"Wrote {out}; new tokens saved in {config_path}. Add the registration to the homeserver's "
          "app_service_config_files and restart it.")
