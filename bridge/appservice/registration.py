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


def _patch_secret(text: str, section: str, key: str, value: str) -> str:
    """Set ``section.key`` in the config's text to ``value`` (a token: letters and digits), keeping every
    comment and every other byte of the operator's file. The YAML parser finds the value's exact place
    (PyYAML's node marks); a regular expression could match the same key in another section, or a comment."""
    root = yaml.compose(text)
    found = None
    if isinstance(root, yaml.MappingNode):
        part = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == section), None)
        if isinstance(part, yaml.MappingNode):
            found = next((v for k, v in part.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
    if not isinstance(found, yaml.ScalarNode):
        raise config_module.ConfigError(f"{section}.{key} is missing from the configuration file; copy it from "
                                        "example-config.yaml")
    start, end = found.start_mark.index, found.end_mark.index
    if start == end and text[start - 1:start] == ":":
        value = " " + value                      # "key:" with nothing after it
    return text[:start] + value + text[end:]


def generate_registration(config_path: Path, out: Path) -> None:
    text = config_path.read_text(encoding="utf-8")
    as_token, hs_token = new_tokens()
    text = _patch_secret(text, "appservice", "as_token", as_token)
    text = _patch_secret(text, "appservice", "hs_token", hs_token)
    raw = yaml.safe_load(text) or {}
    pickle = ((raw.get("crypto") or {}).get("pickle_key") or "")
    if not isinstance(pickle, str) or config_module.secret_problem(pickle):
        text = _patch_secret(text, "crypto", "pickle_key", secrets.token_hex(32))
    config = config_module.load(yaml.safe_load(text), config_path.resolve().parent)   # validate before writing anything
    write_private(out, yaml.safe_dump(registration(config), sort_keys=False))   # both hold the tokens: 0600
    write_private(config_path, text)
    print(f"Wrote {out}; new tokens saved in {config_path}. Add the registration to the homeserver's "
          "app_service_config_files and restart it.")
