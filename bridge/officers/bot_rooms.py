"""Events in the bot's own rooms (dispatch rooms, direct chats with officers): decrypt, then act.

Commands go to ``BotCommands``; a reaction on a chat's or ticket's notice is a claim. An officer
who invites the bot to a direct chat gets it joined there, so commands work privately too.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ..chats import events as ev
from ..chats.inbound import KeyWait
from ..journal import Journal
from ..config import Config
from ..matrix.crypto import Crypto
from ..matrix import cs_api
from ..matrix.homeserver import HomeserverApi
from ..store import Store
from ..store.room_events import DONE, FAILED, IGNORED, RoomEvent
from .bot_commands import BotCommands, BotContext
from .dispatch import Dispatch

log = logging.getLogger(__name__)

# The key of an officer's message can miss the bot for good (the homeserver's to-device push skipped it,
# and Synapse gives the appservice's own user no inbox to fetch): sending again under the same room key
# would fail the same way, so the officer is told how to make their client start a new one (Element's
# /discardsession; other clients start one when a member's devices change).
UNDECRYPTABLE_REPLY = ("{sender}: your message could not be decrypted by the bridge. Please type /discardsession "
                       "in this room, then send it again.")
DIRECT = "bot_direct_room."         # + room ID → the officer who opened it

ReactionHandler = Callable[[BotContext, str, str], Awaitable[None]]   # (ctx, target event ID, key)


class BotRooms:
    def __init__(self, config: Config, store: Store, api: HomeserverApi, crypto: Crypto, dispatch: Dispatch,
                 commands: BotCommands, journal: Journal, bot: str, keys: KeyWait,
                 on_reaction: ReactionHandler | None = None) -> None:
        self.config, self.store, self.api, self.crypto = config, store, api, crypto
        self.dispatch, self.commands, self.journal, self.bot = dispatch, commands, journal, bot
        self.keys, self.on_reaction = keys, on_reaction

    async def restore(self) -> None:
        """At start-up, show the bot's crypto its direct rooms again (dispatch rooms restore themselves):
        nio forgets rooms across restarts, and device changes are followed only for members of rooms it knows."""
        for key in self.store.settings.with_prefix(DIRECT):
            room_id = key[len(DIRECT):]
            try:
                await self.crypto.restore_room(self.bot, room_id)
            except Exception as e:          # the officer may have left, or the room be gone
                log.warning("direct room %s not restored: %s", room_id, e)

    def is_bot_room(self, room_id: str) -> bool:
        return self.dispatch.agency_of_room(room_id) is not None or self.store.settings.get(DIRECT + room_id) is not None

    def owns(self, room_id: str) -> bool:
        """The inbound pump's question (chats.inbound.RoomHandler): the bot's dispatch and direct rooms."""
        return self.is_bot_room(room_id)

    async def adopt(self, item: RoomEvent) -> bool:
        return await self.invited(item)

    def context(self, room_id: str, sender: str, event_id: str | None = None) -> BotContext:
        async def reply(text: str) -> None:
            # A Matrix reply to the command: answers are sent after the command took effect, while the bot reads
            # on, so with several officers at work the answer shows which command it is for.
            self.dispatch.answer(room_id, text, event_id)
        return BotContext(room_id, sender, self.dispatch.agency_of_room(room_id), reply, event_id)

    async def invited(self, item: RoomEvent) -> bool:
        """An invite of the bot to a room that is not ours yet: join when an officer asks. True if handled."""
        event = item.event
        content = event.get("content") or {}
        if not (event.get("type") == "m.room.member" and event.get("state_key") == self.bot
                and content.get("membership") == "invite" and content.get("is_direct")):
            return False                  # other rooms the bot is asked into (summary rooms) are not ours to run
        sender = str(event.get("sender"))
        room_id = item.room_id
        if not any(a.is_officer(sender) for a in self.config.agencies):
            self.journal.audit("bot.invite", sender, "refused", target=self.bot, origin=room_id,
                               reason="not an officer or supervisor")
            await self.api.send(cs_api.leave(room_id), user_id=self.bot, what="decline invite")
            self.store.room_events.finish(item.stream, IGNORED, "invite from a non-officer")
            return True
        await self.api.send(cs_api.join(room_id), user_id=self.bot, what="join direct chat")
        self.store.settings.set(DIRECT + room_id, sender)
        await self.crypto.restore_room(self.bot, room_id)
        self.store.room_events.finish(item.stream, DONE)
        await self.context(room_id, sender).reply(self.commands.help_text())
        return True

    async def _nudge(self) -> bool:
        await self.crypto.nudge_blind_inbox()
        return False                      # nothing fetched now: the key, if it comes, comes with a transaction

    async def handle(self, item: RoomEvent) -> bool:
        """Handle one event; False means "not yet" (its room key has not arrived)."""
        event = item.event
        if "state_key" in event:
            await self.crypto.observe(self.bot, item.room_id, [event])
        sender = str(event.get("sender"))
        if sender == self.bot:
            self.store.room_events.finish(item.stream, DONE)
            return True
        if event.get("type") == "m.room.encrypted":
            # No inbox fetch here (unlike puppets): Synapse refuses /sync to the appservice's own user, so
            # the bot waits for its room key to come with a transaction, and nudges the homeserver to push
            # what it holds for the bot (a key its push skipped comes with the next push).
            decrypted = await self.keys.decrypt(self.bot, item, self._nudge)
            if decrypted.event is None and not decrypted.give_up:
                return False
            if decrypted.event is None:
                # A reply to the message itself: several sent under one lost key each get theirs, and the
                # officer's client shows which message it was (the bot cannot quote what it cannot read).
                self.dispatch.answer(item.room_id, UNDECRYPTABLE_REPLY.format(sender=sender), item.event_id)
                self.store.room_events.finish(item.stream, FAILED, "undecryptable")
                return True
            event = decrypted.event
        ctx = self.context(item.room_id, sender, item.event_id)
        relates = (event.get("content") or {}).get("m.relates_to") or {}
        if event.get("type") == "m.reaction" and relates.get("rel_type") == "m.annotation" and self.on_reaction:
            await self.on_reaction(ctx, str(relates.get("event_id")), str(relates.get("key")))
        elif event.get("type") == "m.room.message" and relates.get("rel_type") != "m.replace":
            meaning = ev.interpret(event)
            if isinstance(meaning, ev.OfficerText) and self.commands.is_command(meaning.body):
                await self.commands.handle(ctx, meaning.body)
        self.store.room_events.finish(item.stream, DONE)
        return True

