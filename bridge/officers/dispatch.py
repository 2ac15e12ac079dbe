"""Dispatch rooms: one encrypted room per agency where the bot shows the live queue.

Each new chat gets a notice when it is queued; the notice is edited (``m.replace``) as the chat
moves, so the room reads as the current state. Alerts (unclaimed too long, emergencies) mention the
supervisors. All sends go through one worker, retried on failure; the store says what a notice must
show, so a repeated or late edit still shows the latest state.

    chat_changed / alert / answer / replace / ticket_changed ──▶ jobs queue ──▶ _run ──▶ up to SENDS_IN_FLIGHT
                                                                  │            │        jobs at once, each retried
              earliest due first: an edit is due EDITS_YIELD ─────┘            └─ a job whose subject (a chat, a
              after it came, anything else at once                                ticket, an edited notice) is being
                                                                                  sent waits for it: an edit always
                                                                                  follows the notice it edits, and
                                                                                  the answers in one room keep the
                                                                                  order of the commands

Sends overlap because each costs the homeserver about 0.2 s under load (bench/latency.py); one at a
time, a burst of new chats made the tenth citizen's notice wait two seconds behind the others.
The bot's answers to commands are jobs too: a command takes effect when it is read, and the next
event of that room is read while the answer is on its way (awaited in the room's pump, ten claims
in a burst each waited for the answer to the one before: the tenth officer was invited 1.5 s late).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from ..background import OrderedSends, Retries
from ..config import Agency, Config
from ..matrix import rooms
from ..matrix.rooms import RoomPolicy
from ..matrix.crypto import Crypto
from ..matrix import cs_api
from ..matrix.homeserver import HomeserverApi, MatrixError
from ..matrix.reachable import transient
from ..matrix.mentions import mentioning
from ..store import Store
from . import dispatch_text

log = logging.getLogger(__name__)

SETTING = "dispatch_room."          # + agency id → room ID
SENDS_IN_FLIGHT = 4                 # dispatch jobs sent at once (different subjects)
EDIT_AFTER = 1.0                    # seconds an edit of a posted notice waits, gathering the changes that follow
EDITS_YIELD = 2.0                   # seconds of later notices, answers and alerts an edit lets go before it
_alerts = itertools.count()


def _now() -> int:
    return int(time.time() * 1000)


class Dispatch:
    def __init__(self, config: Config, store: Store, api: HomeserverApi, crypto: Crypto, bot: str,
                 policy: RoomPolicy | None = None, retries: Retries | None = None) -> None:
        """``retries``: failed posts wait for the homeserver however long it is away (app.py cuts the pauses short
        when it is back); other failures are tried 6 times."""
        self.config, self.store, self.api, self.crypto, self.bot = config, store, api, crypto, bot
        self.retries = retries or Retries()
        self.prefix = config.get("officers.command_prefix")
        self.policy = policy or RoomPolicy()        # ACL and room version of dispatch rooms
        self._jobs: asyncio.PriorityQueue[tuple[float, int, tuple[Any, ...]]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._queued_chats: set[str] = set()
        self._rooms: dict[str, str] = {}                          # agency → its dispatch room, once known
        self._gathering: dict[str, asyncio.TimerHandle] = {}    # chat → its edit, due in EDIT_AFTER
        self._task: asyncio.Task | None = None
        self._sends = OrderedSends(self._attempt, SENDS_IN_FLIGHT)
        self._txn = 0

    # ---- rooms ---------------------------------------------------------------------------------
    def room_of(self, agency_id: str) -> str | None:
        """Asked for every event the bridge reads (is it a bot room?): kept in memory once known; only
        ``_ensure_room`` changes it."""
        room_id = self._rooms.get(agency_id)
        if room_id is None:
            room_id = self.store.settings.get(SETTING + agency_id)
            if room_id is not None:
                self._rooms[agency_id] = room_id
        return room_id

    def _set_room(self, agency_id: str, room_id: str) -> None:
        self.store.settings.set(SETTING + agency_id, room_id)
        self._rooms[agency_id] = room_id

    def agency_of_room(self, room_id: str) -> Agency | None:
        return next((a for a in self.config.agencies if self.room_of(a.id) == room_id), None)

    async def ensure_rooms(self) -> None:
        for agency in self.config.agencies:
            try:
                await self._ensure_room(agency)
            except Exception as e:
                log.warning("dispatch room of %s not ready (will retry at next start): %s", agency.id, e)

    async def _ensure_room(self, agency: Agency) -> None:
        room_id = self.room_of(agency.id)
        if agency.dispatch_room and room_id != agency.dispatch_room:
            await self.api.send(cs_api.join(agency.dispatch_room), user_id=self.bot, what="join dispatch room")
            room_id = agency.dispatch_room
            self._set_room(agency.id, room_id)
        if not room_id:
            room_id = await self._create_room(agency)
            self._set_room(agency.id, room_id)
            log.info("dispatch room of %s created: %s", agency.id, room_id)
        else:
            await self._invite_missing(agency, room_id)
            await self._ensure_acl(agency, room_id)
        await self.crypto.restore_room(self.bot, room_id)

    async def _ensure_acl(self, agency: Agency, room_id: str) -> None:
        """Rooms made before the allowlist changed, or given in the config, get the current server ACL."""
        if self.policy.acl is None:
            return
        try:
            await rooms.ensure_server_acl(self.api, self.bot, room_id, self.policy.acl)
        except MatrixError as e:
            log.warning("dispatch room of %s keeps its server ACL (the bot may not change it): %s", agency.id, e)

    async def _create_room(self, agency: Agency) -> str:
        users = {s: 50 for s in agency.supervisors}
        if not rooms.creator_has_implicit_power(self.policy.version):
            users[self.bot] = 100
        data = await self.api.send(cs_api.create_room({
            "preset": "private_chat", "name": f"Dispatch — {agency.name}",
            "topic": f"Live queue of {agency.name}'s web chats. {self.prefix}help lists the commands.",
            "invite": list(agency.invitees()), "is_direct": False,
            "initial_state": [
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "invited"}},
                {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
                *rooms.server_acl_state(self.policy.acl)],
            "power_level_content_override": {"users": users, "users_default": 0, "events_default": 0,
                                             "state_default": 50, "invite": 50, "kick": 50, "ban": 50,
                                             "redact": 50, "events": {"m.room.server_acl": 100}}}),
            user_id=self.bot, what="create dispatch room")
        return data["room_id"]

    async def _invite_missing(self, agency: Agency, room_id: str) -> None:
        state = await self.api.room_state(self.bot, room_id)
        present = {e.get("state_key") for e in state if e.get("type") == "m.room.member"
                   and (e.get("content") or {}).get("membership") in ("join", "invite")}
        for user in agency.invitees():
            if user not in present:
                try:
                    await self.api.send(cs_api.invite(room_id, user), user_id=self.bot, what="invite to dispatch")
                except MatrixError as e:
                    log.warning("could not invite %s to the dispatch room of %s: %s", user, agency.id, e)

    # ---- sending -------------------------------------------------------------------------------
    async def say(self, room_id: str, text: str, *, mentions: list[str] | None = None,
                  replaces: str | None = None, in_reply_to: str | None = None, msgtype: str = "m.notice") -> str:
        """Send (or, with ``replaces``, edit) an encrypted notice as the bot; returns the event ID.

        ``in_reply_to``: the event this notice answers (clients show the officer's own message above it)."""
        content: dict[str, Any] = {"msgtype": msgtype, "body": text, "format": "org.matrix.custom.html",
                                   "formatted_body": dispatch_text.as_html(text, mentions or [])}
        if in_reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": in_reply_to}}
        if replaces:
            content = {"msgtype": msgtype, "body": "* " + text, "m.new_content": content,
                       "m.relates_to": {"rel_type": "m.replace", "event_id": replaces}}
        content = mentioning(content, mentions)      # previews quote citizens: only the alert's own mentions ring
        self._txn += 1
        return await self.crypto.send_to_members(self.bot, room_id, "m.room.message", content,
                                                 f"precinct.bot.{time.time_ns()}.{self._txn}")

    def chat_changed(self, chat_id: str) -> None:
        """Post the chat's notice at once, or edit it to show its state (de-duplicated while queued).

        An edit waits EDIT_AFTER, so the changes of a chat's first moments (its preview, the claim, the
        officer joining) make one edit, not three: each edit is an event in the busy dispatch room, and
        a burst of new chats made thirty of them in the seconds officers were claiming."""
        if chat_id in self._queued_chats:
            return
        self._queued_chats.add(chat_id)
        chat = self.store.chats.get(chat_id)
        if chat is not None and chat.dispatch_event_id:
            self._gathering[chat_id] = asyncio.get_running_loop().call_later(EDIT_AFTER, self._edit_due, chat_id)
        else:
            self._queue(("chat", chat_id))

    def _edit_due(self, chat_id: str) -> None:
        self._gathering.pop(chat_id, None)
        self._queue(("chat", chat_id), edit=True)

    def alert(self, agency_id: str, text: str, mention_supervisors: bool = True) -> None:
        self._queue(("alert", agency_id, text, mention_supervisors))

    def answer(self, room_id: str, text: str, in_reply_to: str | None = None) -> None:
        """The bot's answer to an officer in any of its rooms (sent after the earlier answers of that room)."""
        self._queue(("answer", room_id, text, in_reply_to))

    def replace(self, agency_id: str, event_id: str, text: str) -> None:
        """Edit one earlier notice to a final text (a chat that left this agency)."""
        self._queue(("replace", agency_id, event_id, text), edit=True)

    def ticket_changed(self, number: int) -> None:
        ticket = self.store.tickets.get(number)
        self._queue(("ticket", number), edit=bool(ticket and ticket.event_id))

    def _queue(self, job: tuple[Any, ...], edit: bool = False) -> None:
        """Jobs go out earliest first, an edit counted EDITS_YIELD later than it came: in a burst the new
        notices and the answers officers wait for go first (Synapse writes one event at a time in a room),
        and an edit kept back meanwhile shows every change made in the wait. Not a timer: with nothing
        else queued an edit goes at once."""
        self._jobs.put_nowait((time.monotonic() + (EDITS_YIELD if edit else 0.0), next(self._order), job))

    def start(self) -> None:
        for chat in self.store.chats.open_chats():
            if not chat.dispatch_event_id:           # queued while the room was not there yet, or a crash
                self.chat_changed(chat.id)
        for ticket in self.store.tickets.unposted():
            self.ticket_changed(ticket.number)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for timer in self._gathering.values():
            timer.cancel()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._sends.stop()

    @staticmethod
    def _subject(job: tuple[Any, ...]) -> tuple[Any, ...]:
        """What a job changes: jobs on the same subject are sent in the order they were queued."""
        if job[0] in ("chat", "ticket"):
            return job[:2]
        if job[0] == "replace":
            return ("event", job[2])
        if job[0] == "answer":
            return ("answers", job[1])
        return ("alert", next(_alerts))                    # alerts stand alone

    async def _run(self) -> None:
        while True:
            await self._sends.slot_free()            # the job is picked only now: the earliest due by then
            _, _, job = await self._jobs.get()
            await self._sends.submit(self._subject(job), job)

    async def _attempt(self, job: tuple[Any, ...]) -> None:
        await self.retries.attempt(lambda: self._do(job), f"dispatch {job[:2]}", tries=6, passing=transient)

    async def _do(self, job: tuple[Any, ...]) -> None:
        if job[0] == "chat":
            self._queued_chats.discard(job[1])
            await self._show_chat(job[1])
        elif job[0] == "alert":
            _, agency_id, text, mention = job
            room = self.room_of(agency_id)
            if room:
                supervisors = list(self.config.agency(agency_id).supervisors) if mention else []
                if supervisors:
                    text += "\n" + " ".join(supervisors)
                await self.say(room, text, mentions=supervisors)
        elif job[0] == "answer":
            _, room_id, text, in_reply_to = job
            await self.say(room_id, text, in_reply_to=in_reply_to)
        elif job[0] == "ticket":
            await self._show_ticket(job[1])
        elif job[0] == "replace":
            _, agency_id, event_id, text = job
            room = self.room_of(agency_id)
            if room:
                await self.say(room, text, replaces=event_id)

    async def _show_chat(self, chat_id: str) -> None:
        chat = self.store.chats.get(chat_id)
        room = self.room_of(chat.agency) if chat else None
        if chat is None or room is None:
            return
        text = dispatch_text.chat_notice(chat, self.config.topic(chat.topic).label, _now(), self.prefix)
        if chat.dispatch_event_id:
            await self.say(room, text, replaces=chat.dispatch_event_id)
        elif chat.state != "closed" or chat.claimed_by:
            event_id = await self.say(room, text)
            self.store.chats.mark(chat.id, dispatch_event_id=event_id)

    async def _show_ticket(self, number: int) -> None:
        ticket = self.store.tickets.get(number)
        room = self.room_of(ticket.agency) if ticket else None
        if ticket is None or room is None:
            return
        text = dispatch_text.ticket_notice(ticket, self.config.topic(ticket.topic).label, self.prefix)
        if ticket.event_id:
            await self.say(room, text, replaces=ticket.event_id)
        else:
            self.store.tickets.set_event(number, await self.say(room, text))
