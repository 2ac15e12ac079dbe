"""Who may take part in a chat room (pure policy, no I/O).

Only the bridge's own users and configured officers on the bridge's homeserver or on a server in
``federation.allowed_servers`` may be invited, stay joined, or receive room keys. The same answer
gives the room's ``m.room.server_acl``, which keeps every other server out at the federation level.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable

from ..config import Agency, Config, server_of


def _host(server_name: str) -> str:
    """The host part of a server name: ACLs match hosts, never ports."""
    if server_name.startswith("["):
        return server_name[: server_name.index("]") + 1]
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


class Access:
    def __init__(self, config: Config, is_ours: Callable[[str], bool]) -> None:
        self.own_server: str = config.get("homeserver.server_name")
        self.allowed_servers: tuple[str, ...] = tuple(config.get("federation.allowed_servers"))
        self.agencies: list[Agency] = list(config.agencies)
        self.is_ours = is_ours

    def server_allowed(self, server: str) -> bool:
        return server == self.own_server or server in self.allowed_servers

    def agency_of(self, user_id: str) -> Agency | None:
        """The agency a user is a configured officer or supervisor of (the first, if several)."""
        return next((a for a in self.agencies if a.is_officer(user_id)), None)

    def may_take_part(self, user_id: str) -> bool:
        """May this user be in a chat room and hold its keys?"""
        if self.is_ours(user_id):
            return True
        return self.server_allowed(server_of(user_id)) and self.agency_of(user_id) is not None

    def refusal(self, user_id: str) -> str:
        """Why a user may not take part, worded for officers."""
        if not self.server_allowed(server_of(user_id)):
            return f"{user_id} is on {server_of(user_id) or 'an unknown server'}, which is not an allowed server"
        return f"{user_id} is not a configured officer or supervisor of any agency"

    def server_acl(self) -> dict[str, Any]:
        """The content of the chat rooms' m.room.server_acl.

        Each server is listed by host (federation requests are matched without the port) and, when it
        has one, also with its port: Synapse checks that an ACL does not deny its own full server name.
        """
        servers = (self.own_server, *self.allowed_servers)
        allow = list(dict.fromkeys(name for s in servers for name in (_host(s), s)))
        return {"allow": allow, "deny": [], "allow_ip_literals": any(_is_ip_literal(_host(s)) for s in servers)}
