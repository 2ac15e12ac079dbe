"""The appservice registration file the homeserver loads."""
from __future__ import annotations

import re
import secrets
from typing import Any

from ..config import Config


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
