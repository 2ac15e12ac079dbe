"""Visitor puppets: a Matrix user, its own device and its own cross-signing identity.

Preparing one takes several homeserver round trips (register, device, key
upload, cross-signing), so a few are prepared ahead in a pool and a new chat
takes one that is ready.  Each step is recorded in the store; a crash part-way
resumes at the step that was not done.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from typing import Any

from ..store.puppets import Puppet, Puppets
from . import cs_api, rooms
from .rooms import RoomPolicy
from .crosssign import CrossSigningIdentity
from .crypto import Crypto, CryptoError
from .homeserver import HomeserverApi, MatrixError

log = logging.getLogger(__name__)

BOT_CHAT = "(bot)"         # the bot's row in the puppets table: a chat ID no chat has
VISITOR_NAME = "Visitor"   # what officers see of a citizen who gave no name


def _chat_named(puppet: Puppet) -> bool:
    """Whether the puppet's display name is the chat set-up's to give: made for one chat, not for the pool."""
    return puppet.chat_id is not None and puppet.chat_id != BOT_CHAT


class PuppetManager:
    def __init__(self, api: HomeserverApi, crypto: Crypto, puppets: Puppets, server_name: str, prefix: str,
                 pool_size: int = 0, bot: str = "", policy: RoomPolicy | None = None) -> None:
        self.api, self.crypto, self.puppets = api, crypto, puppets
        self.server_name, self.prefix, self.pool_size = server_name, prefix, pool_size
        self.bot = bot
        self.policy = policy or RoomPolicy()   # ACL and room version of the rooms made ahead
        self._filling: asyncio.Task | None = None
        self._preparing: dict[str, asyncio.Lock] = {}
        self._waiting: Counter[str] = Counter()     # callers of ensure_ready per puppet, the one holding it too
        self._acl_checked: set[str] = set()

    def is_puppet(self, user_id: str) -> bool:
        return user_id.startswith(f"@{self.prefix}") and user_id.endswith(f":{self.server_name}")

    def has_device(self, user_id: str) -> bool:
        """Puppets and the bot: the users whose devices the bridge runs (their crypto is fed from transactions)."""
        return user_id == self.bot or self.is_puppet(user_id)

    async def ensure_bot(self) -> Puppet:
        """The bot user's own device and cross-signing identity, made like a puppet's (once).

        The bot is the appservice's sender, so it exists already; it is kept in the puppets table under a
        chat ID no chat has, so the pool never hands it out.
        """
        bot = self.puppets.get(self.bot)
        if bot is None:
            bot = self.puppets.add(self.bot, "PRECINCTBOT" + secrets.token_hex(3).upper(), BOT_CHAT)
            self.puppets.mark(self.bot, "registered")
        return await self.ensure_ready(bot)

    async def new(self, chat_id: str | None = None, account_only: bool = False) -> Puppet:
        """A new puppet, for a chat or (chat_id None) for the pool; born assigned so the pool never sees it."""
        localpart = self.prefix + secrets.token_hex(8)
        device_id = "PRECINCT" + secrets.token_hex(4).upper()
        puppet = self.puppets.add(f"@{localpart}:{self.server_name}", device_id, chat_id)
        return await self.ensure_ready(puppet, account_only)

    async def ensure_ready(self, puppet: Puppet, account_only: bool = False) -> Puppet:
        """Finish whatever set-up steps this puppet still lacks (idempotent, one preparation at a time)."""
        user_id = puppet.user_id
        lock = self._preparing.setdefault(user_id, asyncio.Lock())
        self._waiting[user_id] += 1
        try:
            async with lock:
                return await self._prepare(self.puppets.get(user_id) or puppet, account_only)
        finally:
            self._waiting[user_id] -= 1
            if not self._waiting[user_id]:          # nobody else preparing it: no lock kept per puppet ever made
                del self._waiting[user_id]
                self._preparing.pop(user_id, None)

    async def _prepare(self, puppet: Puppet, account_only: bool = False) -> Puppet:
        """The set-up steps, overlapped where one does not need another's answer (each a homeserver round trip,
        queued behind everything else the homeserver does in a burst of new chats):

            register ─▶ device ∥ display name ─▶ device keys ∥ cross-signing keys ─▶ query ─▶ signatures
                     │                        └─ (pool puppets) its room, made meanwhile
                     └─ (account_only) returned here: a chat's set-up names it and makes its room meanwhile

        A chat's own puppet is named by the chat's set-up (``_chat_named``), before its room is made (its
        membership there carries the name), so the name here is only for the pool's and the bot's."""
        user_id = puppet.user_id
        new_account = not puppet.registered        # then it has made no room yet: none to look for
        if not puppet.registered:
            await self.api.register(user_id[1:].split(":")[0])
            self.puppets.mark(user_id, "registered")
        if account_only:
            return self.puppets.get(user_id)  # type: ignore[return-value]
        if not puppet.device_created:
            steps = [self.api.create_device(user_id, puppet.device_id, "Precinct web chat")]
            if not _chat_named(puppet):
                # Officers see VISITOR_NAME unless the citizen gives a name (then the chat renames it).
                steps.append(self.api.set_display_name(user_id, "Precinct" if user_id == self.bot else VISITOR_NAME))
            await asyncio.gather(*steps)
            self.puppets.mark(user_id, "device_created")
        steps = [self._keys(self.puppets.get(user_id) or puppet)]
        if puppet.chat_id is None and not puppet.room_id:
            steps.append(self._pool_room(user_id, new_account))   # off the new chat's critical path, beside the keys
        await asyncio.gather(*steps)
        return self.puppets.get(user_id)  # type: ignore[return-value]

    async def _keys(self, puppet: Puppet) -> None:
        user_id = puppet.user_id
        if puppet.cross_signed:
            await self.crypto.upload_device_keys(user_id)
            return
        identity = CrossSigningIdentity.generate(user_id)
        await asyncio.gather(self.crypto.upload_device_keys(user_id),
                             self.api.upload_cross_signing(user_id, identity.upload_body()))
        device_keys = await self.api.query_device_keys(user_id, puppet.device_id)
        if not device_keys:
            raise RuntimeError(f"homeserver has no keys for {user_id} {puppet.device_id} after upload")
        await self.api.upload_signatures(user_id, identity.sign_device(device_keys))
        # The private keys are not kept: the device is signed once and never replaced.
        self.puppets.mark(user_id, "master_key", identity.master.public_key)
        self.puppets.mark(user_id, "cross_signed")

    async def _pool_room(self, user_id: str, new_account: bool) -> None:
        """Make the pool puppet's room ahead, unless an earlier run made it and stopped before storing its ID."""
        room_id = None if new_account else await rooms.find_chat_room(self.api, user_id)
        if room_id is None:
            room_id = await rooms.create_chat_room(
                self.api, user_id, rooms.pool_room_request(self.bot, user_id, self.policy.version, self.policy.acl))
        elif self.policy.acl is not None:        # made by an earlier run, perhaps under another allowlist
            await rooms.ensure_server_acl(self.api, user_id, room_id, self.policy.acl)
        self._acl_checked.add(user_id)           # its room has today's allowlist: nothing for the next fill
        self.puppets.mark(user_id, "room_id", room_id)

    async def for_chat(self, chat_id: str) -> Puppet:
        """The chat's puppet: already assigned, from the pool (ready, with its room), or made now: then without
        a room and perhaps without its keys yet (the caller makes the room meanwhile, then ``ensure_ready``)."""
        puppet = self.puppets.for_chat(chat_id) or self.puppets.claim_ready(chat_id)
        if puppet is None:
            return await self.new(chat_id, account_only=True)
        self._acl_checked.discard(puppet.user_id)          # out of the pool: its room is a chat's now
        return puppet if puppet.ready else await self.ensure_ready(puppet, account_only=True)

    def refill_pool(self) -> None:
        if self.pool_size > 0 and (self._filling is None or self._filling.done()):
            self._filling = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        try:
            for puppet in self.puppets.pool():
                if not puppet.ready or not puppet.room_id:
                    # A stop while its room was being made leaves a pool puppet ready but roomless: never
                    # handed out (claim_ready wants the room), it would keep a place in the pool for good.
                    await self.ensure_ready(puppet)
                elif self.policy.acl is not None and puppet.user_id not in self._acl_checked:
                    # rooms made ahead by an earlier run, before the allowlist changed (or had an ACL at all)
                    await rooms.ensure_server_acl(self.api, puppet.user_id, puppet.room_id, self.policy.acl)
                    self._acl_checked.add(puppet.user_id)
            while len(self.puppets.pool()) < self.pool_size:
                await self.new()
        except Exception:
            log.exception("could not fill the puppet pool; chats will prepare their own puppet")

    async def retire(self) -> int:
        """Retire the puppets whose chat is over for good (purged at the end of its retention, or erased at the
        citizen's request once its redactions are sent); how many.

        Each leaves its room, its device is deleted on the homeserver (with the device go its keys and the
        to-device messages the homeserver kept for it: Synapse keeps every one an appservice was pushed), then
        its store here and its row. Idempotent step by step: one the homeserver refuses now (away, say) stays,
        and the next sweep tries it again."""
        retired = 0
        for puppet in self.puppets.retirable():
            try:
                if puppet.room_id:
                    await self.api.send(cs_api.leave(puppet.room_id), user_id=puppet.user_id, ok=(200, 403, 404),
                                        what="leave a finished chat's room")
                await self.api.send(cs_api.delete_device(puppet.device_id), user_id=puppet.user_id,
                                    ok=(200, 404), what="delete a finished chat's device")
                await self.crypto.discard(puppet.user_id)
            except (MatrixError, CryptoError, OSError, asyncio.TimeoutError) as e:
                log.warning("could not retire %s (its chat is over); trying again later: %s: %s",
                            puppet.user_id, type(e).__name__, e)
                continue
            self.puppets.delete(puppet.user_id)
            retired += 1
        if retired:
            log.info("retired %d puppets whose chats were purged or erased", retired)
        return retired

    async def stop(self) -> None:
        if self._filling and not self._filling.done():
            self._filling.cancel()
            try:
                await self._filling
            except (asyncio.CancelledError, Exception):
                pass
