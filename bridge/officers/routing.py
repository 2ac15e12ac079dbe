"""Routing: the queue, claims, automatic assignment, availability, timers and emergencies.

    chat queued ──▶ dispatch notice ──▶ !claim / reaction (manual) or pick_officer (auto)
        ──▶ store.chats.claim (atomic: one winner) ──▶ the officer alone is invited ──▶ joins ──▶ active

Decisions are pure (``decide.py``); this module reads the store, applies them and keeps the
dispatch room, the citizen and the journal told. Timers run on a one-second tick.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from ..background import Periodic
from ..journal import Journal
from ..chats import training
from ..chats.lifecycle import ChatListener, ChatService
from ..config import Agency, Config
from ..matrix import rooms
from ..matrix.reachable import transient
from ..store.chats import ACTIVE, CLOSED, WAITING, Chat
from ..store.messages import OFFICER, VISITOR
from ..store.tickets import Ticket
from . import decide, dispatch_text, emergency
from .bot_commands import BotCommands, BotContext
from .commands import Command, Spec
from .dispatch import Dispatch

log = logging.getLogger(__name__)

PREVIEW_CHARS = 140


def _now() -> int:
    return int(time.time() * 1000)


class Routing(Periodic, ChatListener):
    def __init__(self, config: Config, chats: ChatService, dispatch: Dispatch, journal: Journal,
                 bot_commands: BotCommands) -> None:
        super().__init__(self._pass, 1.0, "routing pass")
        self.config, self.chats, self.store, self.dispatch = config, chats, chats.store, dispatch
        self.journal, self.prefix = journal, config.get("officers.command_prefix")
        self._tasks: set[asyncio.Task] = set()
        self._passed_over: dict[str, set[str]] = {}      # chat → officers who let it time out (auto mode)
        self._presence_every = config.get("officers.presence_poll_seconds")
        self._presence_next = 0.0
        bot_commands.register(Spec("claim", "claim <number>", "take a chat (or an offline message: T<number>)",
                                   arg="required"), self._cmd_claim)
        bot_commands.register(Spec("available", "available", "take automatically assigned chats"),
                              self._cmd_available)
        bot_commands.register(Spec("away", "away", "stop taking automatically assigned chats"), self._cmd_away)
        bot_commands.register(Spec("practice", "practice [scenario] [@trainee]",
                                   "supervisors: start a practice chat; the bridge plays the citizen "
                                   "(scenarios: training.scenarios in the config)", arg="optional"),
                              self._cmd_practice)
        bot_commands.register(Spec("watch", "watch <number>", "supervisors: join an active chat's room to review it "
                                   "(the citizen is told at the start that chats may be reviewed)", arg="required"),
                              self._cmd_watch)

    # ---- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        for chat in self.store.chats.open_chats():
            if chat.claimed_by and chat.state == WAITING and chat.room_id:
                self._spawn(self._invite(chat.id))          # an invite a crash may have lost (idempotent)
        super().start()

    async def stop(self) -> None:
        await super().stop()                                # the loop first: it spawns nothing after this
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pass(self) -> None:
        """Once a second and at every wake (Periodic): the timers, then waiting chats to officers."""
        await self._timers()
        await self._assign_waiting()

    # ---- chat life (ChatListener) -------------------------------------------------------------------
    def queued(self, chat: Chat) -> None:
        self.dispatch.chat_changed(chat.id)
        self.wake()

    def transferred(self, before: Chat, chat: Chat) -> None:
        """The old notice says where the chat went; a new one goes to the receiving agency's dispatch room
        (claimed already when the chat was sent to one officer)."""
        self._passed_over.pop(chat.id, None)
        if before.dispatch_event_id:
            to = chat.transfer_to if chat.transfer_to and chat.transfer_to.startswith("@") \
                else self.config.agency(chat.agency).name
            self.dispatch.replace(before.agency, before.dispatch_event_id,
                                  dispatch_text.transferred_notice(before, self.config.topic(before.topic).label, to,
                                                                   chat.transferred_by or "an officer"))
        self.dispatch.chat_changed(chat.id)
        self.wake()

    def ready(self, chat: Chat, invited: tuple[str, ...] = ()) -> None:
        if chat.claimed_by and chat.claimed_by not in invited:
            self._spawn(self._invite(chat.id))
        for officer in invited:
            if officer != chat.claimed_by:    # requeued while its room was being made: the invite is withdrawn
                self._spawn(self._withdraw(chat, officer))

    async def _withdraw(self, chat: Chat, officer: str) -> None:
        try:
            await rooms.kick(self.chats.api, chat.puppet, chat.room_id, officer,  # type: ignore[arg-type]
                             "The chat went back to the queue.")
        except Exception as e:
            log.warning("could not take %s out of chat %s: %s", officer, chat.number, e)

    def visitor_said(self, chat: Chat, body: str) -> None:
        fresh = self.store.chats.refresh(chat)
        if not fresh.preview:
            preview = " ".join(body.split())
            self.store.chats.mark(chat.id, preview=preview[:PREVIEW_CHARS] + ("…" if len(preview) > PREVIEW_CHARS else ""))
            self.dispatch.chat_changed(chat.id)
        agency = self.config.agency(chat.agency)
        found = None if fresh.emergency else emergency.match(body, emergency.phrases_for(agency.emergency,
                                                                                          chat.language))
        if found:
            self.raise_emergency(fresh, "visitor", matched=found)

    def officer_said(self, chat: Chat, user_id: str) -> None:
        fresh = self.store.chats.refresh(chat)
        if fresh.claimed_by == user_id and not fresh.replied_ts:
            self.store.chats.mark(chat.id, replied_ts=_now())

    def joined(self, chat: Chat, user_id: str) -> None:
        self.dispatch.chat_changed(chat.id)

    def closed(self, chat: Chat) -> None:
        self.dispatch.chat_changed(chat.id)
        self._passed_over.pop(chat.id, None)
        self.wake()                                   # a slot may have freed for automatic assignment

    def ticket(self, ticket: Ticket) -> None:
        self.dispatch.ticket_changed(ticket.number)

    def present(self, chat: Chat, user_id: str, name: str) -> str:
        agency = self.config.agency(chat.agency)
        if agency.present_officers_as == "display_name" or not agency.is_officer(user_id):
            return name
        return agency.present_officers_as.replace("{n}", str(self.store.officers.get(agency.id, user_id).number))

    # ---- who may act ---------------------------------------------------------------------------------
    def may_act(self, chat: Chat, user_id: str) -> bool:
        """Configured officers and supervisors of the chat's agency, and whoever holds the chat."""
        return (chat.claimed_by == user_id or chat.transferred_by == user_id
                or self.config.agency(chat.agency).is_officer(user_id))

    # ---- claiming ------------------------------------------------------------------------------------
    async def claim(self, chat: Chat, officer: str, how: str, origin: str | None) -> str:
        """Give the chat to the officer if still free; returns what to tell them. ``how``: "command" or
        "reaction" (the officer took it), "auto" or "practice" (it was given to them)."""
        given = how in ("auto", "practice")
        agency = self.config.agency(chat.agency)
        if not agency.is_officer(officer):
            self.journal.audit("chat.claim", officer, "refused", target=chat.id, origin=origin,
                               reason="not an officer of " + agency.id)
            return f"{officer} is not an officer of {agency.name}; chat {chat.number} not claimed."
        if chat.state == CLOSED:
            return f"Chat {chat.number} is closed."
        if chat.claimed_by:
            self.journal.audit("chat.claim", officer, "refused", target=chat.id, origin=origin,
                               reason="already claimed", holder=chat.claimed_by)
            return f"Chat {chat.number} was already taken by {chat.claimed_by}."
        held = self.store.chats.held_by(officer, agency.id)
        if held >= agency.max_chats_per_officer:
            self.journal.audit("chat.claim", officer, "refused", target=chat.id, origin=origin,
                               reason="at the cap", held=held)
            return (f"{officer} already holds {held} chats, the most allowed at once "
                    f"({agency.max_chats_per_officer}); close one first.")
        with self.store.db.transaction():
            won = self.store.chats.claim(chat.id, officer)
            if won:
                kind = "assigned" if given else "claimed"
                self.store.officers.get(agency.id, officer)
                self.store.officers.assigned(agency.id, officer)
                self.journal.chat_event(chat.id, kind, officer, how=how)
                self.journal.audit("chat.assign" if given else "chat.claim", officer, target=chat.id,
                                   origin=origin, how=how)
        if not won:
            holder = self.store.chats.refresh(chat).claimed_by
            self.journal.audit("chat.claim", officer, "refused", target=chat.id, origin=origin,
                               reason="already claimed", holder=holder)
            return f"Chat {chat.number} was already taken by {holder}."
        self.dispatch.chat_changed(chat.id)
        self.chats.queue_moved(chat.agency)
        if self.store.chats.refresh(chat).room_id:
            self._spawn(self._invite(chat.id))
        else:
            self.chats.start_setup(chat.id)     # a chat that has not spoken yet: its room now; ready() invites
        verb = "assigned to" if given else "claimed by"
        return f"Chat {chat.number} {verb} {officer}; they are being invited to its room."

    async def _invite(self, chat_id: str) -> None:
        chat = self.store.chats.get(chat_id)
        if chat is None or not chat.claimed_by or not chat.room_id or not chat.puppet or chat.state == CLOSED:
            return
        puppet, room_id, officer = chat.puppet, chat.room_id, chat.claimed_by
        await self.chats.retries.attempt(lambda: rooms.invite(self.chats.api, puppet, room_id, officer),
                                         f"inviting {officer} to chat {chat.number}", tries=5, passing=transient)

    async def requeue(self, chat: Chat, reason: str) -> None:
        """The holder loses the chat (did not answer): out of the room, back to the queue."""
        officer = chat.claimed_by
        if not officer:
            return
        if not self.chats.requeue(chat, officer, reason):
            return
        self._passed_over.setdefault(chat.id, set()).add(officer)
        self.dispatch.chat_changed(chat.id)
        self.dispatch.alert(chat.agency, f"Chat {chat.number} is back in the queue: {officer} {reason}.",
                            mention_supervisors=False)
        if chat.room_id and chat.puppet:
            await self._withdraw(chat, officer)
        self.wake()

    # ---- priority and emergencies -------------------------------------------------------------------------
    def set_priority(self, chat: Chat, high: bool, actor: str) -> None:
        self.chats.set_priority(chat, high, actor)
        self.dispatch.chat_changed(chat.id)

    def raise_emergency(self, chat: Chat, actor: str, **details: object) -> None:
        """Banner to the citizen, high priority, front of the queue, supervisors alerted (once per chat)."""
        self.chats.raise_emergency(chat, actor, **details)
        self.dispatch.chat_changed(chat.id)
        where = f"held by {chat.claimed_by}" if chat.claimed_by else "now first in the queue"
        self.dispatch.alert(chat.agency, f"🚨 Emergency in chat {chat.number} ({where}).")
        if chat.room_id and chat.claimed_by:
            self.chats.notify_officers(chat, "🚨 This chat is marked an emergency; supervisors have been alerted.")

    def set_tags(self, chat: Chat, tags: list[str]) -> None:
        self.store.chats.mark(chat.id, tags=json.dumps(tags))
        self.dispatch.chat_changed(chat.id)

    # ---- timers and automatic assignment --------------------------------------------------------------
    async def _absent_holders(self) -> None:
        """Officers holding chats who are gone (presence offline or unavailable, inactive past their agency's
        timeouts.officer_absent_seconds): supervisors alerted, each such chat back to the queue (or on to the
        next available officer in automatic mode). Presence is asked of the homeserver, which pushes
        appservices presence only for their own users; remote officers whose server shares none are covered by
        the chat's own timers."""
        if time.monotonic() < self._presence_next:
            return
        self._presence_next = time.monotonic() + self._presence_every
        held: dict[tuple[str, str], list[Chat]] = {}
        for chat in self.store.chats.open_chats():
            if chat.claimed_by and self.config.agency(chat.agency).timeouts.officer_absent_seconds:
                held.setdefault((chat.claimed_by, chat.agency), []).append(chat)
        asked: dict[str, dict] = {}
        for (officer, agency_id), chats in held.items():
            if officer not in asked:
                try:
                    asked[officer] = await self.chats.api.presence(self.chats.bot, officer)
                except Exception as e:           # unknown (remote, or presence off): the chat's timers cover it
                    log.debug("presence of %s unknown: %s", officer, e)
                    asked[officer] = {}
                if asked[officer].get("presence"):
                    self.store.officers.set_presence(officer, str(asked[officer]["presence"]))
            seen = asked[officer]
            grace = self.config.agency(agency_id).timeouts.officer_absent_seconds
            away_ts = self.store.officers.get(agency_id, officer).away_ts
            if decide.absent(seen.get("presence"), seen.get("last_active_ago"), grace):
                minutes = max(1, round(int(seen["last_active_ago"]) / 60000))
                why = f"is {seen['presence']} (last active {minutes} min ago)"
            elif away_ts is not None and decide.absent("unavailable", _now() - away_ts, grace):
                minutes = max(1, round((_now() - away_ts) / 60000))
                why = f"said they are away ({minutes} min ago)"
            else:
                continue
            self.dispatch.alert(agency_id, f"{officer} {why}: {len(chats)} chat(s) they held go back to the queue "
                                f"({', '.join(str(c.number) for c in chats)}).")
            for chat in chats:
                await self.requeue(chat, why)

    async def _timers(self) -> None:
        now = _now()
        await self._absent_holders()
        for chat in self.chats.abandoned(now):
            self.chats.expire(chat)                    # closed; closed() below updates its dispatch notice
        for agency in self.config.agencies:
            self._realert(agency, now)
        for chat in self.store.chats.open_chats():
            agency = self.config.agency(chat.agency)
            if decide.reads_message_times(chat, agency.timeouts):
                visitor, officer = (self.store.messages.last_ts(chat.id, VISITOR),
                                    self.store.messages.last_ts(chat.id, OFFICER))
            else:                           # a waiting chat: two reads a second each, for nothing
                visitor = officer = None
            action = decide.due(chat, agency.timeouts, now, visitor, officer)
            if action == decide.UNANSWERED:
                await self.requeue(chat, f"did not answer within {agency.timeouts.unanswered_seconds:g}s")
            elif action == decide.IDLE_WARN:
                self.chats.warn_idle(chat, now)
            elif action == decide.IDLE_CLOSE:
                self.chats.close_idle(chat)            # the listener's closed() updates its dispatch notice

    def _realert(self, agency: Agency, now: int) -> None:
        """At most one notice per interval in the agency's dispatch room, listing every chat still unclaimed."""
        listed = decide.unclaimed_alert(self.store.chats.waiting(agency.id), agency.timeouts, now)
        if not listed:
            return
        with self.store.db.transaction():
            for chat in listed:
                self.store.chats.mark(chat.id, alerted_ts=now)
                self.journal.chat_event(chat.id, "unclaimed_alert", None, listed=len(listed))
        self.dispatch.alert(agency.id, dispatch_text.unclaimed_notice(listed, now, self.prefix))

    async def _assign_waiting(self) -> None:
        for agency in self.config.agencies:
            if agency.routing != "auto":
                continue
            for chat in self.store.chats.waiting(agency.id):
                officer = decide.pick_officer(self._candidates(agency), agency.max_chats_per_officer,
                                              frozenset(self._passed_over.get(chat.id, ())))
                if officer is None:
                    break
                answer = await self.claim(chat, officer, "auto", None)
                self.dispatch.alert(agency.id, answer, mention_supervisors=False)

    def _candidates(self, agency: Agency) -> list[decide.Candidate]:
        return [decide.Candidate(o.user_id, self.store.chats.held_by(o.user_id, agency.id),
                                 decide.is_available(o.available, o.presence) and agency.is_officer(o.user_id),
                                 o.last_assigned_ts or 0)
                for o in self.store.officers.of_agency(agency.id)]

    def presence(self, user_id: str, presence: str) -> None:
        self.store.officers.set_presence(user_id, presence)
        self.wake()

    # ---- bot commands ---------------------------------------------------------------------------------
    async def _cmd_claim(self, ctx: BotContext, cmd: Command) -> None:
        target = cmd.arg.strip().lstrip("#")
        if target[:1].upper() == "T" and target[1:].isdigit():
            await ctx.reply(await self.claim_ticket(ctx, int(target[1:])))
            return
        if not target.isdigit():
            await ctx.reply(f"Usage: {self.prefix}claim <number> (a chat) or {self.prefix}claim T<number> "
                            f"(an offline message); {cmd.arg!r} is neither.")
            return
        chat = self.store.chats.by_number(int(target))
        if chat is None or chat.agency not in {a.id for a in ctx.agencies(self.config)}:
            await ctx.reply(f"There is no chat {target} for you to claim here.")
            return
        await ctx.reply(await self.claim(chat, ctx.sender, "command", ctx.room_id))

    async def _cmd_practice(self, ctx: BotContext, cmd: Command) -> None:
        """A supervisor starts a practice chat in one of their agencies (chats/training.py); with a trainee
        named, it is theirs at once, otherwise it waits in the queue like any chat."""
        words = (cmd.arg or "").split()
        trainee = next((w for w in words if w.startswith("@")), None)
        names = [w for w in words if not w.startswith("@")]
        agencies = [a for a in ctx.agencies(self.config) if a.is_supervisor(ctx.sender)]
        if not agencies:
            self.journal.audit("chat.practice", ctx.sender, "refused", origin=ctx.room_id,
                               reason="not a supervisor here")
            await ctx.reply(f"Only supervisors may start a practice chat; {ctx.sender} is not one here.")
            return
        if names == [training.LIVE.id]:
            # The citizen's link must reach the supervisor alone, not every officer of this room.
            await ctx.reply("A practice chat in which you play the citizen is started from the console: "
                            f"{self.config.get('web.public_url')}/console/practice")
            return
        scenario = self.config.scenario(names[0] if names else None)
        if scenario is None or len(names) > 1:
            known = ", ".join(sc.id for sc in self.config.scenarios) or "none configured"
            await ctx.reply(f"Usage: {self.prefix}practice [scenario] [@trainee]; scenarios: {known}.")
            return
        agency = agencies[0]
        if trainee is not None and not agency.is_officer(trainee):
            await ctx.reply(f"{trainee} is not an officer of {agency.name}; no practice chat started.")
            return
        chat, _ = self.chats.open_practice(scenario, agency.id, ctx.sender, ctx.room_id)
        if trainee is not None:
            await ctx.reply(await self.claim(chat, trainee, "practice", ctx.room_id))
        else:
            await ctx.reply(f"Practice chat {chat.number} ({scenario.title}) is in the queue; the bridge plays "
                            "the citizen. It never counts in reports.")

    async def _cmd_watch(self, ctx: BotContext, cmd: Command) -> None:
        """A supervisor looks in on a chat of their agency: invited to its room by the chat's puppet (the
        room's history and keys come with the join), audited; the chat stays with whoever holds it."""
        target = cmd.arg.strip().lstrip("#")
        chat = self.store.chats.by_number(int(target)) if target.isdigit() else None
        agencies = [a for a in ctx.agencies(self.config) if a.is_supervisor(ctx.sender)]
        if chat is None or chat.agency not in {a.id for a in agencies}:
            self.journal.audit("chat.watch", ctx.sender, "refused", target=chat.id if chat else target,
                               origin=ctx.room_id, reason="not a supervisor of the chat's agency" if chat
                               else "no such chat")
            await ctx.reply(f"There is no chat {target} you supervise here." if chat is None or agencies
                            else f"Only supervisors may watch a chat; {ctx.sender} is not one here.")
            return
        await ctx.reply(await self.watch(chat, ctx.sender, ctx.room_id))

    async def watch(self, chat: Chat, supervisor: str, origin: str | None) -> str:
        """Invite a supervisor (already checked to supervise the chat's agency: the bot command or the console)
        to the chat's room to review it; audited. Returns what to tell them."""
        chat = self.store.chats.refresh(chat)
        if chat.state == CLOSED or not chat.room_id or not chat.puppet:
            return (f"Chat {chat.number} has no conversation to watch "
                    f"({'closed' if chat.state == CLOSED else 'nothing said yet'}).")
        await rooms.invite(self.chats.api, chat.puppet, chat.room_id, supervisor)
        self.journal.audit("chat.watch", supervisor, target=chat.id, origin=origin)
        return f"{supervisor}: you are invited to chat {chat.number}'s room to review it."

    async def claim_ticket(self, ctx: BotContext, number: int) -> str:
        """Taking an offline message: the officer answers it by the contact given; the notice says who has it."""
        ticket = self.store.tickets.get(number)
        if ticket is None or ticket.agency not in {a.id for a in ctx.agencies(self.config)}:
            return f"There is no offline message T{number} for you here."
        with self.store.db.transaction():
            won = self.store.tickets.claim(number, ctx.sender)
            self.journal.audit("ticket.claim", ctx.sender, "ok" if won else "refused", target=f"T{number}",
                               origin=ctx.room_id, **({} if won else {"reason": "already taken"}))
        if not won:
            return f"Offline message T{number} was already taken by {self.store.tickets.get(number).claimed_by}."  # type: ignore[union-attr]
        self.dispatch.ticket_changed(number)
        return f"Offline message T{number} is yours, {ctx.sender}: please answer it by the contact given."

    async def on_reaction(self, ctx: BotContext, target: str, key: str) -> None:
        """A reaction on a chat's or ticket's notice claims it."""
        chat = self.store.chats.by_dispatch_event(target)
        if chat is not None:
            if chat.agency in {a.id for a in ctx.agencies(self.config)}:
                await ctx.reply(await self.claim(chat, ctx.sender, "reaction", ctx.room_id))
            else:
                self.journal.audit("chat.claim", ctx.sender, "refused", target=chat.id, origin=ctx.room_id,
                                   reason="not an officer of " + chat.agency)
                await ctx.reply(f"{ctx.sender} is not an officer here; chat {chat.number} not claimed.")
            return
        ticket = self.store.tickets.by_event(target)
        if ticket is not None:
            await ctx.reply(await self.claim_ticket(ctx, ticket.number))

    async def _cmd_available(self, ctx: BotContext, cmd: Command) -> None:
        await self._availability(ctx, True)

    async def _cmd_away(self, ctx: BotContext, cmd: Command) -> None:
        await self._availability(ctx, False)

    async def _availability(self, ctx: BotContext, available: bool) -> None:
        names = []
        for agency in ctx.agencies(self.config):
            with self.store.db.transaction():
                self.store.officers.set_available(agency.id, ctx.sender, available)
                self.journal.audit("officer." + ("available" if available else "away"), ctx.sender,
                                   target=agency.id, origin=ctx.room_id)
            names.append(agency.name)
        self.wake()
        await ctx.reply(f"{ctx.sender} is {'available' if available else 'away'} for {', '.join(names)}.")
