"""Unloads puppet crypto clients nobody has used for a while (``crypto.idle_unload_seconds``).

A loaded client is memory (its Olm account, sessions and rooms); the chats it served end, but the
homeserver goes on sending their puppets things (one-time-key counts, room keys for a last message), and
each loads the client again. Without this the bridge kept every puppet it ever served loaded: memory and
store files grew with every chat, not with the chats open. Unloaded clients load again on demand.
"""
from __future__ import annotations

import logging

from ..background import Periodic
from .crypto import Crypto

log = logging.getLogger(__name__)


class IdleUnloader(Periodic):
    def __init__(self, crypto: Crypto, idle_seconds: float) -> None:
        super().__init__(self._unload, max(1.0, idle_seconds / 4), "unloading idle puppet clients")
        self.crypto, self.idle_seconds = crypto, idle_seconds

    async def _unload(self) -> None:
        if unloaded := await self.crypto.unload_idle(self.idle_seconds):
            log.debug("unloaded %d idle puppet clients; %d loaded", unloaded, self.crypto.live_clients)
