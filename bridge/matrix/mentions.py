"""Intentional mentions (Matrix 1.7, MSC3952): a message that carries ``m.mentions`` notifies only the users
it lists there, and clients and homeservers then skip the old push rules that matched the body ("@room",
a display name, a user ID). Everything the bridge relays carries one, so that nothing a citizen types can
ring an officer's or a whole room's notifications; only the bot's alerts name whom they mean to wake.
"""
from __future__ import annotations

from typing import Any

NO_ONE: dict[str, Any] = {}


def mentioning(content: dict[str, Any], user_ids: list[str] | None = None) -> dict[str, Any]:
    """A copy of a message's content that notifies exactly ``user_ids`` (no one by default).

    An edit (``m.new_content``) notifies no one itself; its new content gets the same mentions, which
    clients compare with the original's, as the spec asks."""
    mentions = {"user_ids": list(user_ids)} if user_ids else dict(NO_ONE)
    out = {**content, "m.mentions": mentions}
    if isinstance(content.get("m.new_content"), dict):
        out["m.new_content"] = {**content["m.new_content"], "m.mentions": mentions}
        out["m.mentions"] = dict(NO_ONE)
    return out


def ensure_mentions(content: dict[str, Any]) -> dict[str, Any]:
    """``content`` as is when it already says whom it mentions, else made to mention no one."""
    return content if "m.mentions" in content else mentioning(content)
