"""Wiring: builds the store, the Matrix side, the chat services and both listeners; starts and stops them."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .appservice.endpoint import AppserviceEndpoint
from .chats.hub import ChatHub
from .chats.inbound import InboundPump
from .chats.journal import Journal, LogJournal
from .chats.lifecycle import ChatService
from .chats.outbound import OutboundPump
from .config import Config
from . import __version__
from .matrix import bot, rooms
from .matrix.crypto import Crypto
from .matrix.intent import HomeserverApi
from .matrix.puppets import PuppetManager
from .officers.bot_commands import BotCommands
from .officers.bot_rooms import BotRooms
from .officers.chat_room import ChatRoomCommands
from .officers.dispatch import Dispatch
from .officers.routing import Routing
from .store import Store
from .web.server import public_app
from .web.visitor_api import VisitorApi

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, config: Config, journal: Journal | None = None) -> None:
        self.config = config
        self.journal = journal or LogJournal()
        self.store = Store.open(config.path("store.path"), config.get("chats.first_number"))
        self.api = HomeserverApi(config.get("homeserver.url"), config.get("appservice.as_token"),
                                 config.get("appservice.id"), config.get("homeserver.verify_tls"))
        self.crypto = Crypto(self.api, config.get("homeserver.url"), config.path("store.crypto_dir"),
                             config.get("crypto.pickle_key"), self.store.puppets)
        self.puppets = PuppetManager(self.api, self.crypto, self.store.puppets, config.get("homeserver.server_name"),
                                     config.get("appservice.puppet_prefix"), config.get("chats.puppet_pool_size"),
                                     bot=f"@{config.get('appservice.bot_localpart')}:{config.get('homeserver.server_name')}")
        self.hub = ChatHub()
        self.outbound = OutboundPump(self.store, self.crypto)
        self.chats = ChatService(config, self.store, self.api, self.crypto, self.puppets, self.hub,
                                 self.outbound.wake)
        self.chats.journal = self.journal
        prefix = config.get("officers.command_prefix")
        self.commands = ChatRoomCommands(self.chats, self.journal, prefix)
        self.inbound = InboundPump(config, self.store, self.crypto, self.puppets, self.chats, self.commands)
        # The officers' side: the bot's commands (other features register theirs on bot_commands),
        # dispatch rooms, and routing (queue, claims, assignment, timers, emergencies).
        self.bot_commands = BotCommands(config, self.journal, prefix)
        self.dispatch = Dispatch(config, self.store, self.api, self.crypto, self.chats.bot)
        self.routing = Routing(config, self.chats, self.dispatch, self.journal, self.bot_commands)
        self.commands.routing = self.routing
        self.bot_rooms = BotRooms(config, self.store, self.api, self.crypto, self.dispatch, self.bot_commands,
                                  self.journal, self.chats.bot)
        self.bot_rooms.on_reaction = self.routing.on_reaction
        self.inbound.bot_rooms = self.bot_rooms
        self.inbound.on_presence = self.routing.presence
        self.endpoint = AppserviceEndpoint(config.get("appservice.hs_token"), self.store.transactions,
                                           self.inbound.wake, self._user_exists)
        self.visitor_api = VisitorApi(config, self.store, self.chats)
        self._runners: list[web.AppRunner] = []

    def _user_exists(self, user_id: str) -> bool:
        return self.puppets.is_puppet(user_id) and self.store.puppets.exists(user_id)

    async def _listen(self, app: web.Application, host: str, port: int) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runners.append(runner)

    async def start(self) -> None:
        await self.api.start()
        # The appservice listener first: the homeserver may start delivering as soon as we ping.
        await self._listen(self.endpoint.app(), self.config.get("appservice.bind_host"),
                           self.config.get("appservice.port"))
        await self._wait_for_homeserver()
        self.chats.room_version = self.puppets.room_version = self.dispatch.room_version = \
            await rooms.default_room_version(self.api)
        await self.puppets.ensure_bot()
        await self.dispatch.ensure_rooms()
        self.inbound.start()
        self.outbound.start()
        await self.chats.resume()
        self.inbound.wake()
        self.outbound.wake()
        self.puppets.refill_pool()
        self.dispatch.start()
        self.routing.start()
        await self._listen(public_app(self.visitor_api), self.config.get("web.bind_host"), self.config.get("web.port"))
        try:
            # An event of ours wakes the homeserver's appservice scheduler (idle after its own restart);
            # the ping then makes it retry queued transactions now rather than after its back-off.
            await bot.announce_start(self.api, self.store.settings, self.chats.bot, __version__)
            await self.api.ping()
        except Exception as e:
            log.warning("start-up notice or appservice ping failed (is the registration loaded?): %s", e)
        log.info("Precinct is running: citizens at %s/chat", self.config.get("web.public_url"))

    async def _wait_for_homeserver(self, attempts: int = 60) -> None:
        for i in range(attempts):
            try:
                await self.api.request("GET", "/_matrix/client/versions", what="versions")
                return
            except Exception as e:
                if i == attempts - 1:
                    raise RuntimeError(f"homeserver at {self.config.get('homeserver.url')} not reachable: {e}")
                log.info("waiting for the homeserver: %s", e)
                await asyncio.sleep(1)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        await self.puppets.stop()
        await self.routing.stop()
        await self.dispatch.stop()
        await self.chats.stop()
        await self.inbound.stop()
        await self.outbound.stop()
        await self.crypto.close()
        await self.api.close()
        self.store.close()
