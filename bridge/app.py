"""Wiring: builds the store, the Matrix side, the chat services and both listeners; starts and stops them."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .appservice.catchup import RoomCatchup
from .appservice.endpoint import AppserviceEndpoint
from .chats.hub import ChatHub
from .chats.inbound import ChatRooms, InboundPump, KeyWait
from .journal import Journal
from .chats.lifecycle import ChatService
from .chats.outbound import OutboundPump
from .client_address import ClientAddresses
from .config import Config
from .console.auth import ConsoleAuth, supervised_agencies
from .console.practice_web import PracticeWeb
from .console.reports_web import ReportsWeb
from .console.web import ConsoleWeb
from .background import Periodic, Retries
from .limits import Limit
from .reports.poster import SummaryPoster
from .resources import FreedHeap, OpenFiles, Shortages, loop_exception_handler, raise_open_files_limit
from . import __version__, metrics
from .matrix import bot, rooms
from .matrix.crypto import Crypto
from .matrix.idle import IdleUnloader
from .matrix.homeserver import HomeserverApi
from .matrix.reachable import HomeserverWatch, transient
from .matrix.puppets import PuppetManager
from .matrix.rooms import RoomPolicy
from .console.bot_command import SPEC as CONSOLE_SPEC, ConsoleCommand
from .officers.access import Access
from .officers.admission import Admission
from .officers.bot_commands import BotCommands
from .officers.bot_rooms import BotRooms
from .officers.chat_room import ChatRoomCommands
from .officers.dispatch import Dispatch
from .officers.routing import Routing
from .officers.transfer import Transfers
from .records import Records
from .records.keeper import RecordsKeeper
from .records.retention import Retention
from .store import Store
from .web.pow import PowGate
from .web.server import GuardedSite, busy_answer, public_app
from .web.visitor_api import VisitorApi
from .webhooks.announcing import AnnouncingJournal
from .webhooks.sender import WebhookSender

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, config: Config, journal: Journal | None = None) -> None:
        self.config = config
        # Descriptors kept for open chats, and one rate-limited report when anything runs short (resources.py).
        self.open_files = OpenFiles(config.get("resources.reserved_descriptors"))
        self.shortages = Shortages(self.open_files)
        self.freed_heap = FreedHeap()
        self.heap_return = Periodic(self.freed_heap.give_back, FreedHeap.EVERY, "giving freed heap back")
        # Group commit: no fsync on the event loop; whatever acknowledges awaits store.db.durable() (store/db.py).
        self.store = Store.open(config.path("store.path"), config.get("chats.first_number"), group_commit=True)
        self.records = Records.open(config, self.store)
        self.journal: Journal = journal or self.records
        self.retention = Retention(config, self.store, self.records)
        self.webhooks = WebhookSender(self.store.webhooks, config.webhooks, self.journal, self.store.db.transaction,
                                      self.store.db.durable)
        self.journal = AnnouncingJournal(self.journal, self.store, config.webhooks, self.webhooks.wake)
        self.api = HomeserverApi(config.get("homeserver.url"), config.get("appservice.as_token"),
                                 config.get("appservice.id"), config.get("homeserver.verify_tls"),
                                 durable=self.store.db.durable, max_connections=config.get("homeserver.max_connections"))
        bot_user = f"@{config.get('appservice.bot_localpart')}:{config.get('homeserver.server_name')}"
        # Who may take part (officers/access.py; the bridge's own users by name, asked only once running),
        # and the one room policy every room the bridge makes shares (its version learnt at start-up).
        self.access = Access(config, lambda user_id: user_id == bot_user or self.puppets.is_puppet(user_id))
        self.room_policy = RoomPolicy(acl=self.access.server_acl())
        self.crypto = Crypto(self.api, config.get("homeserver.url"), config.path("store.crypto_dir"),
                             config.get("crypto.pickle_key"), self.store.puppets,
                             config.get("crypto.new_device_window_seconds"), blind_inbox_user=bot_user,
                             resident=[bot_user], may_hold_keys=self.access.may_take_part)
        self.idle_unloader = IdleUnloader(self.crypto, config.get("crypto.idle_unload_seconds"))
        self.puppets = PuppetManager(self.api, self.crypto, self.store.puppets, config.get("homeserver.server_name"),
                                     config.get("appservice.puppet_prefix"), config.get("chats.puppet_pool_size"),
                                     bot=bot_user, policy=self.room_policy)
        # The homeserver may be away at start or for a while later: citizens are served all the same, and the
        # work that failed meanwhile (sends, chats' set-ups) goes at once when it answers again.
        self.retries = Retries()
        self.homeserver = HomeserverWatch(self.api, self._homeserver_back)
        self._connecting: asyncio.Task | None = None
        self.connected = False                       # start-up's homeserver steps are done (/health)
        self.hub = ChatHub(keep_left_seconds=config.longest_abandoned_seconds())
        self.outbound = OutboundPump(self.store, self.crypto, self.retries)
        self.chats = ChatService(config, self.store, self.api, self.crypto, self.puppets, self.hub,
                                 self.outbound.wake, self.journal, policy=self.room_policy, retries=self.retries)
        self.admission = Admission(config, self.chats, self.access, self.journal, self.api)
        self.transfers = Transfers(config, self.chats, self.access, self.journal, self.api, self.admission)
        prefix = config.get("officers.command_prefix")
        # The officers' side: the bot's commands (other features register theirs on bot_commands),
        # dispatch rooms, routing (queue, claims, assignment, timers, emergencies), chat-room commands.
        self.bot_commands = BotCommands(config, self.journal, prefix)
        self.dispatch = Dispatch(config, self.store, self.api, self.crypto, self.chats.bot, policy=self.room_policy,
                                 retries=self.retries)
        self.routing = Routing(config, self.chats, self.dispatch, self.journal, self.bot_commands)
        self.chats.listen(self.routing)
        self.commands = ChatRoomCommands(self.chats, self.journal, prefix, retention=self.retention,
                                         transfers=self.transfers, routing=self.routing)
        # Matrix → citizen and bot: each room's events to the handler that owns it (chats/inbound.py).
        keys = KeyWait(self.store, self.crypto, config.get("crypto.undecryptable_wait_seconds"))
        self.bot_rooms = BotRooms(config, self.store, self.api, self.crypto, self.dispatch, self.bot_commands,
                                  self.journal, self.chats.bot, keys, on_reaction=self.routing.on_reaction)
        # What the homeserver's push may have left out (Synapse can strand a transaction), read back from the rooms.
        self.catchup = RoomCatchup(self.api, self.store, self._rooms_to_catch_up, lambda: self.inbound.wake(),
                                   lambda: bot.mark_push(self.api, self.store.settings, self.chats.bot))
        chat_rooms = ChatRooms(config, self.store, self.crypto, self.puppets, self.chats, self.commands,
                               self.admission, keys, self.catchup.read_back_room)
        self.inbound = InboundPump(self.store, self.crypto, self.puppets, self.chats, [chat_rooms, self.bot_rooms],
                                   on_presence=self.routing.presence)
        self.endpoint = AppserviceEndpoint(config.get("appservice.hs_token"), self.store.transactions,
                                           self.inbound.wake, self._user_exists, self.store.db.durable)
        self.keeper = RecordsKeeper(config, self.store, self.api, self.records, self.retention,
                                    retire_puppets=self.puppets.retire)
        self.pow_gate = PowGate.from_config(config)
        # Who is asking, behind the reverse proxy or not: one answer for the visitor API and the console.
        addresses = ClientAddresses(config.get("web.trusted_proxies"))
        self.visitor_api = VisitorApi(config, self.store, self.chats, retention=self.retention,
                                      on_erased=self.keeper.wake, pow_gate=self.pow_gate, journal=self.journal,
                                      addresses=addresses, open_files=self.open_files, shortages=self.shortages)
        self.console_auth = ConsoleAuth(self.store, self.journal, lambda user: supervised_agencies(config, user),
                                        config.get("web.public_url"), config.get("console.link_ttl_seconds"),
                                        config.get("console.idle_minutes"), sign_in_limit=Limit(
                                            "console_sign_ins", config.rate("limits.console_sign_ins_per_address"),
                                            config.rate("limits.console_sign_ins_overall")))
        self.console = ConsoleWeb(config, self.store, self.console_auth, self.records, self.retention, self.chats.bot,
                                  addresses, sections=[ReportsWeb(config, self.store, self.records, addresses),
                                                       PracticeWeb(config, self.chats, self.routing.claim, self.journal,
                                                                   addresses)],
                                  watch=self.routing.watch)
        # !console in a direct chat with the bot (the command refuses non-supervisors and records it).
        self.bot_commands.register(CONSOLE_SPEC, ConsoleCommand(self.console_auth, prefix).handle,
                                   officers_only=False)
        self.summaries = SummaryPoster(config, self.store, self.journal, self._post_to_supervisors)
        self._runners: list[web.AppRunner] = []
        self._unwatch = metrics.watch(metrics.LevelsCollector(
            self.store.chats.counts, lambda: [a.id for a in config.agencies], self.hub.connections,
            self.store.transactions.count_unprocessed, self.pow_gate.difficulty if self.pow_gate.enabled else None,
            live_puppet_clients=lambda: self.crypto.live_clients))

    async def _post_to_supervisors(self, room_id: str, text: str) -> None:
        """The daily summary: encrypted by the bot's own device in an encrypted room, a plain notice otherwise."""
        if await bot.join_room(self.api, self.chats.bot, room_id):
            await self.crypto.restore_room(self.chats.bot, room_id)
            await self.dispatch.say(room_id, text)
        else:
            await bot.post_notice(self.api, self.chats.bot, room_id, text)

    def _user_exists(self, user_id: str) -> bool:
        return self.puppets.is_puppet(user_id) and self.store.puppets.exists(user_id)

    async def _listen(self, app: web.Application, host: str, port: int, *, guarded: bool = False) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        if guarded:      # citizens' connections: refused at once when descriptors are almost gone
            await GuardedSite(runner, host, port, self.open_files, self.shortages,
                              busy_answer(self.visitor_api.busy())).start()
        else:            # the homeserver's and Prometheus' few connections are never refused
            await web.TCPSite(runner, host, port).start()
        self._runners.append(runner)

    async def start(self) -> None:
        """Listen, then reach the homeserver in the background (``connecting``): the page is served and citizens'
        messages are stored and acknowledged whether or not the homeserver answers yet; ``/health`` says 503
        until it has, and everything written meanwhile is sent once it does."""
        raise_open_files_limit()              # as Synapse does: the soft limit up to the hard one, logged
        # asyncio's accept loop logs a full descriptor table once per waiting connection, every second.
        asyncio.get_running_loop().set_exception_handler(loop_exception_handler(self.shortages))
        self.records.config_loaded(self.config)
        await self.api.start()
        # The appservice listener first: the homeserver may start delivering as soon as we ping.
        await self._listen(self.endpoint.app(), self.config.get("appservice.bind_host"),
                           self.config.get("appservice.port"))
        if self.config.get("metrics.enabled"):
            await self._listen(metrics.app(), self.config.get("metrics.bind_host"), self.config.get("metrics.port"))
        self.homeserver.start()
        await self._listen(public_app(self.visitor_api, self.console.app(), durable=self.store.db.durable,
                                      shortages=self.shortages, readiness=self._readiness),
                           self.config.get("web.bind_host"), self.config.get("web.port"), guarded=True)
        log.info("Precinct is listening: citizens at %s/chat", self.config.get("web.public_url"))
        self._connecting = asyncio.create_task(self._connect())

    @property
    def connecting(self) -> asyncio.Task:
        """Start-up's homeserver steps; it ends in an exception only when the homeserver refuses the bridge."""
        assert self._connecting is not None, "start() not called"
        return self._connecting

    def _readiness(self) -> str | None:
        """None when ready; otherwise what /health says instead of ok."""
        if not self.connected:
            return "starting" if self.homeserver.reachable else "homeserver_unreachable"
        return None if self.homeserver.reachable else "homeserver_unreachable"

    async def _connect(self) -> None:
        """The start-up steps that need the homeserver, once it answers; tried again while it fails by itself
        (gone again, 5xx), not when it refuses us (a wrong as_token: that is the operator's to fix)."""
        delay = 1.0
        while True:
            await self.homeserver.wait_answered()
            try:
                self.room_policy.version = await rooms.default_room_version(self.api)
                await self.puppets.ensure_bot()
                break
            except Exception as e:
                if not transient(e):
                    log.error("the homeserver refused the bridge's start-up: %s", e)
                    raise
                log.warning("start-up with the homeserver failed (again in %.0f s): %s", delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        await self.dispatch.ensure_rooms()
        await self.bot_rooms.restore()
        self.inbound.start()
        self.outbound.start()
        self.idle_unloader.start()
        self.heap_return.start()
        self.catchup.start()
        self.keeper.start()
        self.webhooks.start()
        self.summaries.start()
        # An event of ours wakes the homeserver's appservice scheduler (idle after its own restart); the ping then
        # makes it push what it kept for us now rather than after its back-off. Before the open chats are caught
        # up, not after: the inbound pump is running and takes what comes meanwhile (a key not fetched yet is
        # waited for, as any late key), and after a crash with 200 conversations under way the officers' lines
        # written while the bridge was down reached their citizens 2.4 s later, behind the catch-up.
        try:
            await bot.announce_start(self.api, self.store.settings, self.chats.bot, __version__)
        except Exception as e:
            log.warning("start-up notice failed: %s", e)
        await self._ping()
        await self.chats.resume()             # with the chats citizens opened and spoke in before this
        self.inbound.wake()
        self.outbound.wake()
        self.puppets.refill_pool()
        self.dispatch.start()
        self.routing.start()
        self.connected = True
        log.info("Precinct is running: citizens at %s/chat", self.config.get("web.public_url"))

    async def _ping(self) -> None:
        if not self.config.get("homeserver.ping_at_start"):
            log.info("appservice ping off (homeserver.ping_at_start): the homeserver delivers after its back-off")
            return
        try:
            await self.api.ping()
        except Exception as e:
            log.warning("appservice ping failed (is the registration loaded?); the homeserver will deliver "
                        "after its own back-off: %s", e)

    async def _homeserver_back(self) -> None:
        """The homeserver answers again after failing: what waited out a back-off goes now, and the ping asks it to
        push what it kept for us at once."""
        self.retries.now()
        self.outbound.wake()
        if self.connected:
            await self._ping()

    def _rooms_to_catch_up(self) -> list[tuple[str, str]]:
        """Open chats' rooms as their puppets, dispatch rooms as the bot."""
        chats = [(c.puppet, c.room_id) for c in self.store.chats.open_with_room() if c.puppet and c.room_id]
        dispatch = [(self.chats.bot, room) for a in self.config.agencies if (room := self.dispatch.room_of(a.id))]
        return chats + dispatch          # type: ignore[return-value]

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        await self.homeserver.stop()
        for runner in self._runners:
            await runner.cleanup()
        # No request can be refused any more: the counts of open refusal windows go on record now, before
        # anything slower (the homeserver) could hold the stop up past a service manager's patience.
        self.records.refusals.flush(everything=True)
        self.records.trail.checkpoint()             # the chain's head signed as the bridge stops
        self._unwatch()
        await self.puppets.stop()
        await self.routing.stop()
        await self.dispatch.stop()
        await self.chats.stop()
        await self.inbound.stop()
        await self.outbound.stop()
        await self.idle_unloader.stop()
        await self.heap_return.stop()
        await self.catchup.stop()
        await self.keeper.stop()
        await self.webhooks.stop()
        await self.summaries.stop()
        await self.crypto.close()
        await self.api.close()
        self.store.close()
        asyncio.get_running_loop().set_exception_handler(None)
