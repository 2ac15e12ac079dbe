"""Matrix → citizen: from stored appservice transactions to messages the citizen can read.

    as_transactions (stored by appservice.endpoint before its 200)
        │ 1. crypto payload → matrix.crypto.feed_transaction (keys before the messages that need them)
        │ 2. typing, receipts, presence → hub, chats
        │ 3. room events → room_events (unique event_id: replays and repeats vanish here), and the
        │    transaction marked processed, in one commit
        ▼
    room_events, per room, oldest first (by the homeserver's clock), to the RoomHandler that owns the room (given at wiring time:
        │ ChatRooms below for chats, officers.bot_rooms.BotRooms for the bot's dispatch and direct rooms)
        │ membership/state → crypto.observe (who to encrypt for) + chat life cycle (officer joined)
        │ m.room.encrypted → KeyWait: crypto.decrypt; no key yet → the room waits (order kept): the inbox is
        │                    fetched, after 5 s the sender's devices are asked for the key (m.room_key_request),
        │                    and when `undecryptable_wait_seconds` pass the sender is asked to resend
        ▼ m.room.message / redaction → messages (+ seq) and the event marked done, in one commit

A failing event is marked ``failed`` with its error and logged; it never blocks the rest. This module knows
nothing of officers: admission and chat-room commands come in as the small protocols below.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence

from .. import metrics
from ..background import WakeableLoop
from ..config import Config
from ..matrix.crypto import SENDER_DEVICE, Crypto, megolm_position
from ..matrix.puppets import PuppetManager
from ..store import Store
from ..store.attachments import Attachment
from ..store.chats import CLOSED, Chat
from ..store.room_events import DONE, FAILED, IGNORED, RoomEvent
from . import events as ev
from .lifecycle import ChatService

log = logging.getLogger(__name__)

EPHEMERAL = ("ephemeral", "de.sorunome.msc2409.ephemeral")
UNKNOWN_ROOM_GRACE_MS = 10 * 60 * 1000   # events may arrive before we stored the room we just created
READ_BACK_MS = 15 * 60 * 1000            # how far back a room is read when an officer's message was skipped
INDEXED_ROOMS = 1000                     # rooms whose session numbers are kept in memory (the most recent)
# A room key normally comes before its message or within a second of it, and one the push skipped is in the
# inbox (fetched at once); one still missing after this long is asked of the sender's devices.
ASK_SENDER_AFTER_MS = 5000


class RoomHandler(Protocol):
    """Owns the events of some rooms."""

    def owns(self, room_id: str) -> bool: ...

    async def handle(self, item: RoomEvent) -> bool:
        """Handle one event; False means "not yet" (its room key has not arrived): later events wait too."""

    async def adopt(self, item: RoomEvent) -> bool:
        """An event in a room nobody owns (an invite, say): True if this handler took it."""


class Admission(Protocol):
    """Who may be in a chat's room and see the citizen (officers.admission.Admission)."""

    def admitted(self, chat: Chat, user_id: str) -> bool: ...
    async def refuse(self, chat: Chat, user_id: str, membership: str, sender: str) -> None: ...
    async def joined(self, chat: Chat, user_id: str) -> None: ...
    def refuse_message(self, chat: Chat, sender: str, event_id: str, what: str, said: str | None) -> None: ...


class ChatCommands(Protocol):
    """Officers' commands in a chat's room (officers.chat_room.ChatRoomCommands)."""

    def is_command(self, body: str) -> bool: ...
    async def handle(self, chat: Chat, sender: str, name: str, body: str) -> None: ...


@dataclass(frozen=True)
class Decrypted:
    event: dict[str, Any] | None        # None: its room key is not here (yet)
    give_up: bool = False               # … and the wait for it is over: tell the sender, set the event aside


class KeyWait:
    """Decrypt an officer's event, or wait for its room key until ``crypto.undecryptable_wait_seconds`` have
    passed since the bridge received it (or since this start, for an event received before it). One rule for
    chat rooms and the bot's rooms; what to fetch meanwhile and whom to tell when it is over is the caller's.

    The wait runs from receipt, not from the event's first try: a room's events are handled one at a time, so
    ten commands sent under one missing key would otherwise wait one after the other (ten waits before the
    officer hears of the last)."""

    def __init__(self, store: Store, crypto: Crypto, wait_seconds: float) -> None:
        self.store, self.crypto, self.wait_ms = store, crypto, int(wait_seconds * 1000)
        self.started_ms = int(time.time() * 1000)

    async def decrypt(self, user_id: str, item: RoomEvent,
                      fetch_keys: Callable[[], Awaitable[bool]] | None = None) -> Decrypted:
        """``fetch_keys``: look for a missing key elsewhere (True if it did; the event is tried again)."""
        event = await self.crypto.decrypt(user_id, item.event)
        if event is None and fetch_keys is not None and await fetch_keys():
            event = await self.crypto.decrypt(user_id, item.event)
        if event is not None:
            return Decrypted(event)
        if item.first_failed_ts is None:
            metrics.decrypt_failed(final=False)
        self.store.room_events.note_failure(item.stream)
        waited_ms = time.time() * 1000 - max(item.received_ts, self.started_ms)
        if waited_ms >= min(ASK_SENDER_AFTER_MS, self.wait_ms):
            await self._ask_sender(user_id, item)
        if waited_ms < self.wait_ms:
            return Decrypted(None)
        metrics.decrypt_failed(final=True)
        return Decrypted(None, give_up=True)

    async def _ask_sender(self, user_id: str, item: RoomEvent) -> None:
        """Ask the sender's devices for the key (once per session: Crypto keeps count); a failure to ask is only
        logged, the wait goes on."""
        try:
            if await self.crypto.request_room_key(user_id, item.event):
                metrics.room_key_requested()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("could not ask %s for the room key of %s: %s: %s", item.event.get("sender"),
                        item.event.get("event_id"), type(e).__name__, e)


class InboundPump(WakeableLoop):
    def __init__(self, store: Store, crypto: Crypto, puppets: PuppetManager, chats: ChatService,
                 handlers: Sequence[RoomHandler], on_presence: Callable[[str, str], None] | None = None) -> None:
        self.store, self.crypto, self.puppets, self.chats = store, crypto, puppets, chats
        self.handlers = list(handlers)
        self.on_presence = on_presence
        self.bot = chats.bot
        self.failed_events = 0
        super().__init__()
    async def _run(self) -> None:
        while True:
            await self._sleep(2.0)                    # woken, or a periodic pass: undecryptable deadlines
            try:
                await self.process_all()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.store.db.note(e):
                    log.warning("inbound pump pass stopped: the store's disk is full; retrying")
                else:
                    log.exception("inbound pump pass failed; retrying")
                await asyncio.sleep(1)

    async def process_all(self) -> None:
        while batch := self.store.transactions.unprocessed():
            for txn_id, body in batch:
                await self.process_transaction(txn_id, body)
        for room_id in self.store.room_events.rooms_pending():
            await self.process_room(room_id)

    async def process_transaction(self, txn_id: str, body: dict[str, Any]) -> None:
        """Crypto first, then the room events queued and the transaction marked processed in one commit (one
        write of the store's log a transaction, not one per event plus one for the mark). A crash before that
        commit feeds the crypto payload again on restart, as it always could between feeding and marking."""
        try:
            await self.crypto.feed_transaction(body, self.puppets.has_device)
        except Exception:
            log.exception("transaction %s: crypto payload could not be applied", txn_id)
        for key in EPHEMERAL:
            for e in body.get(key) or []:
                if isinstance(e, dict) and e.get("type") == "m.typing":
                    self._typing(e)
                elif isinstance(e, dict) and e.get("type") == "m.receipt":
                    self._receipts(e)
                elif isinstance(e, dict) and e.get("type") == "m.presence" and self.on_presence:
                    content = e.get("content") or {}
                    if isinstance(e.get("sender"), str) and isinstance(content.get("presence"), str):
                        self.on_presence(e["sender"], content["presence"])
        with self.store.db.transaction():
            for event in body.get("events") or []:
                if not (isinstance(event, dict) and isinstance(event.get("event_id"), str)
                        and isinstance(event.get("room_id"), str) and isinstance(event.get("type"), str)):
                    log.warning("transaction %s: malformed event set aside: %.200r", txn_id, event)
                    self.failed_events += 1
                    continue
                # The echo of what we sent ourselves (a puppet's message, the bot's notice) is done on arrival:
                # every handler would only mark it so. State events go through: encryption follows membership.
                self.store.room_events.add(event, handled=self._ours(str(event.get("sender")))
                                           and "state_key" not in event)
            self.store.transactions.mark_processed(txn_id)
        metrics.transaction_processed(_oldest_origin(body))

    def _typing(self, event: dict[str, Any]) -> None:
        chat = self.store.chats.by_room(str(event.get("room_id")))
        if chat and chat.state != CLOSED:
            users = (event.get("content") or {}).get("user_ids") or []
            self.chats.hub.typing(chat.id, any(not self._ours(u) for u in users))

    def _receipts(self, event: dict[str, Any]) -> None:
        """Officers' m.read receipts in a chat's room: the citizen sees how far their messages were read."""
        chat = self.store.chats.by_room(str(event.get("room_id")))
        content = event.get("content")
        if chat is None or chat.state == CLOSED or not isinstance(content, dict):
            return
        for event_id, kinds in content.items():
            readers = kinds.get("m.read") if isinstance(kinds, dict) else None
            if isinstance(event_id, str) and isinstance(readers, dict) \
                    and any(isinstance(u, str) and not self._ours(u) for u in readers):
                self.chats.officer_read(chat, event_id)

    def _ours(self, user_id: str) -> bool:
        return user_id == self.bot or self.puppets.is_puppet(user_id)

    async def process_room(self, room_id: str) -> None:
        pending = self.store.room_events.pending(room_id)
        handler = next((h for h in self.handlers if h.owns(room_id)), None)
        if handler is None:
            now = int(time.time() * 1000)
            for item in pending:
                if any([await h.adopt(item) for h in self.handlers]):
                    continue
                # Our own events in a room that is not a chat (the bot's status room, a pool room not
                # yet given to a chat; its state is read from the homeserver when it is) mean nothing here.
                if self._ours(str(item.event.get("sender"))) \
                        or now - int(item.event.get("origin_server_ts") or now) > UNKNOWN_ROOM_GRACE_MS:
                    self.store.room_events.finish(item.stream, IGNORED, "not a chat room")
            return
        for item in pending:
            try:
                if not await handler.handle(item):
                    return                            # waiting for keys: later events wait too
            except Exception as e:
                if self.store.db.note(e):
                    # The disk is full: what the event's handling wrote was rolled back, so it stays pending
                    # (and the room's later events behind it) and is handled on a pass once there is space.
                    log.warning("event %s in room %s waits for space on the store's disk", item.event_id, room_id)
                    return
                log.exception("event %s in room %s failed; set aside", item.event_id, room_id)
                self.failed_events += 1
                self.store.room_events.finish(item.stream, FAILED, f"{type(e).__name__}: {e}")


class ChatRooms:
    """The events of chats' rooms: officers' messages, edits, files and removals to the citizen; joins and
    refusals; commands kept from the citizen."""

    def __init__(self, config: Config, store: Store, crypto: Crypto, puppets: PuppetManager, chats: ChatService,
                 commands: ChatCommands, admission: Admission, keys: KeyWait,
                 read_back: Callable[[str, str, int], Awaitable[int]]) -> None:
        """``read_back(puppet, room_id, since_ms)``: read the room's timeline back now and queue the events the
        bridge never received; how many (appservice/catchup.py)."""
        self.store, self.crypto, self.puppets, self.chats = store, crypto, puppets, chats
        self.commands, self.admission, self.keys, self.read_back = commands, admission, keys, read_back
        # Per room and sender, the highest message number handled of each room-key session (see _in_sequence): read
        # from the store when a room is first needed (so it holds across restarts), the rooms of the last
        # INDEXED_ROOMS kept in memory (a room dropped is read again when it speaks again).
        self._last_index: OrderedDict[str, dict[str, dict[str, int]]] = OrderedDict()
        self._gap_waited: set[str] = set()         # events held once for transactions not yet taken in
        self._gap_read: set[str] = set()           # events whose gap was already read back for
        self.max_hash_bytes = max(config.get("attachments.max_bytes"), 100 * 1024 * 1024)
        self.bot = chats.bot

    def owns(self, room_id: str) -> bool:
        chat = self.store.chats.by_room(room_id)
        return chat is not None and bool(chat.puppet)

    async def adopt(self, item: RoomEvent) -> bool:
        return False

    def _ours(self, user_id: str) -> bool:
        return user_id == self.bot or self.puppets.is_puppet(user_id)

    async def handle(self, item: RoomEvent) -> bool:
        chat = self.store.chats.by_room(item.room_id)     # as it is now: the last event may have changed it
        assert chat is not None
        return await self.handle_in(chat, item)

    async def handle_in(self, chat: Chat, item: RoomEvent) -> bool:
        """Handle one event of this chat's room; False means "not yet" (undecryptable for now)."""
        event, puppet = item.event, chat.puppet
        assert puppet
        if "state_key" in event:
            await self.crypto.observe(puppet, chat.room_id, [event])  # type: ignore[arg-type]
        if self._ours(str(event.get("sender"))):
            self.store.room_events.finish(item.stream, DONE)
            return True
        if event["type"] == "m.room.encrypted":
            decrypted = await self.keys.decrypt(puppet, item, lambda: self.crypto.recover_keys(puppet))
            if decrypted.event is None and not decrypted.give_up:
                return False
            if decrypted.event is None:
                # A reply to the message itself (the bridge cannot quote what it could not read). Sent again under
                # the same room key it would fail the same way: Element's /discardsession starts a new one.
                self.chats.notify_officers(chat, f"⚠ {event.get('sender')}: the citizen did not receive your "
                                           f"message sent at {_clock(event)} (it could not be decrypted). Please "
                                           "type /discardsession, then send it again.", item.event_id)
                self.store.room_events.finish(item.stream, FAILED, "undecryptable")
                return True
            event = decrypted.event
            if not await self._in_sequence(chat, item):
                return False
        meaning = ev.interpret(event)
        sender, device = str(event.get("sender")), event.get(SENDER_DEVICE)
        name = await self._display_name(chat, sender)
        if isinstance(meaning, ev.Membership):
            if meaning.membership in ("invite", "join") and not self._ours(meaning.user_id) \
                    and not self.admission.admitted(chat, meaning.user_id):
                await self.admission.refuse(chat, meaning.user_id, meaning.membership, sender)
            elif meaning.membership == "join" and meaning.previous != "join" and not self._ours(meaning.user_id):
                # Idempotent, so a crash before the event is marked done just repeats it harmlessly.
                await self.chats.officer_joined(chat, meaning.user_id, self.chats.listener.present(
                    chat, meaning.user_id, meaning.display_name or meaning.user_id))
                await self.admission.joined(chat, meaning.user_id)
            self.store.room_events.finish(item.stream, DONE)
            return True
        if isinstance(meaning, (ev.OfficerText, ev.OfficerEdit)) and self.commands.is_command(meaning.body):
            # Never to the citizen: a command (even a mistyped one), or an edit turning text into one.
            if isinstance(meaning, ev.OfficerText):
                await self.commands.handle(chat, sender, name, meaning.body)
            self.store.room_events.finish(item.stream, DONE)
            return True
        if isinstance(meaning, TO_CITIZEN) and not self.admission.admitted(chat, sender):
            # Checked on every message, not only on joins: membership can lag (a refused member's message
            # may arrive before the kick) and a chat can change hands (transfer) with people still in the room.
            with self.store.db.transaction():
                self.admission.refuse_message(chat, sender, item.event_id, _what(meaning), _said(meaning))
                self.store.room_events.finish(item.stream, IGNORED, "sender not admitted to the chat")
            return True
        sha256 = None
        if isinstance(meaning, ev.OfficerAttachment):      # before the transaction: it downloads
            sha256 = await self.chats.attachment_sha256(chat, meaning.mxc, meaning.file_info, self.max_hash_bytes)
        with self.store.db.transaction():
            if isinstance(meaning, ev.OfficerText):
                self.chats.officer_message(chat, meaning.kind, meaning.body, sender, name, item.event_id,
                                           event.get("origin_server_ts"), device=device)
            elif isinstance(meaning, ev.OfficerAttachment):
                self.chats.officer_message(chat, meaning.kind, meaning.name, sender, name, item.event_id,
                                           event.get("origin_server_ts"), device=device,
                                           attachment=Attachment(chat.id, 0, meaning.name, meaning.mimetype,
                                                                 meaning.size, sha256, meaning.mxc, meaning.file_info))
            elif isinstance(meaning, (ev.OfficerEdit, ev.OfficerRedaction)):
                target = self.store.messages.by_event_id(meaning.target_event_id)
                # Only within this chat; an edit only by whoever wrote the original (as Matrix clients do).
                allowed = target is not None and target.chat_id == chat.id and (
                    isinstance(meaning, ev.OfficerRedaction) or target.sender_mxid == sender)
                if not allowed:
                    log.info("chat %s: %s ignored: it targets a message it may not change", chat.number,
                             item.event_id)
                elif target is not None:
                    kind, body = ("edit", meaning.body) if isinstance(meaning, ev.OfficerEdit) else ("redaction", "")
                    self.chats.officer_message(chat, kind, body, sender, name, item.event_id,
                                               event.get("origin_server_ts"), target_seq=target.seq, device=device)
            elif isinstance(meaning, ev.Unsupported):
                log.info("chat %s: %s not shown to the citizen: %s", chat.number, item.event_id, meaning.reason)
            self.store.room_events.finish(item.stream, DONE)
        return True

    async def _in_sequence(self, chat: Chat, item: RoomEvent) -> bool:
        """False when an earlier message of the same sender never reached the bridge and was now read back from
        the room: it is queued and handled first, so the citizen gets them in the order written.

        The homeserver pushes a room's events in the order they were written, except when it strands a
        transaction (Synapse, appservice/catchup.py): its events come with a later recovery or never, after
        messages written after them. The bridge sees that by the Megolm message numbers, which the officer's
        client gives 0, 1, 2 … to what it encrypts in the room: a number skipped means an earlier message the
        push went past (or a send that failed and never happened, which the reading shows: nothing is found).
        A sender's new room key (clients start one when someone leaves, and every 100 messages in Element) is
        checked the same way: the last messages under the old key may be what the push went past."""
        position = megolm_position(item.event)
        if position is None:
            return True
        session, index = position
        room_id = chat.room_id
        assert room_id and chat.puppet
        sessions = self._numbers(room_id).setdefault(str(item.event.get("sender")), {})
        last = sessions.get(session, -1)
        gap = index > last + 1 or (last == -1 and bool(sessions))
        if gap and item.event_id not in self._gap_read:
            if item.event_id not in self._gap_waited and self.store.transactions.unprocessed(1):
                self._gap_waited.add(item.event_id)
                return False          # first what the push has already brought (the next pass takes it in)
            self._gap_read.add(item.event_id)
            since = int(item.event.get("origin_server_ts") or time.time() * 1000) - READ_BACK_MS
            try:
                found = await self.read_back(chat.puppet, room_id, since)
            except Exception as e:            # never a reason to hold the message back: it goes now
                log.warning("chat %s: %s skipped a message number or began a new room key; the room could not be "
                            "read back: %s", chat.number, item.event_id, e)
                found = 0
            if found:
                log.warning("chat %s: %s came before %d earlier event(s) the homeserver's push skipped; read back, "
                            "they go first", chat.number, item.event_id, found)
                return False
        sessions[session] = max(index, last)
        self._gap_waited.discard(item.event_id)      # handled now: nothing is held for it any more
        self._gap_read.discard(item.event_id)
        return True

    def _numbers(self, room_id: str) -> dict[str, dict[str, int]]:
        """Sender → session ID → highest message number handled in the room."""
        numbers = self._last_index.get(room_id)
        if numbers is None:
            numbers = {}
            for e in self.store.room_events.handled_encrypted(room_id):
                if (p := megolm_position(e)) is not None:
                    sessions = numbers.setdefault(str(e.get("sender")), {})
                    sessions[p[0]] = max(p[1], sessions.get(p[0], -1))
            self._last_index[room_id] = numbers
            while len(self._last_index) > INDEXED_ROOMS:
                self._last_index.popitem(last=False)
        self._last_index.move_to_end(room_id)
        return numbers

    async def _display_name(self, chat: Chat, user_id: str) -> str:
        name = await self.crypto.member_name(chat.puppet, chat.room_id, user_id)  # type: ignore[arg-type]
        return self.chats.listener.present(chat, user_id, name or user_id)


TO_CITIZEN = (ev.OfficerText, ev.OfficerAttachment, ev.OfficerEdit, ev.OfficerRedaction)


def _what(meaning: object) -> str:
    return {ev.OfficerText: "text", ev.OfficerAttachment: "attachment", ev.OfficerEdit: "edit",
            ev.OfficerRedaction: "redaction"}[type(meaning)]


def _said(meaning: object) -> str | None:
    """What a refused message said, for the record (a file by its name)."""
    if isinstance(meaning, (ev.OfficerText, ev.OfficerEdit)):
        return meaning.body
    return meaning.name if isinstance(meaning, ev.OfficerAttachment) else None


def _oldest_origin(body: dict[str, Any]) -> int | None:
    stamps = [e["origin_server_ts"] for e in body.get("events") or []
              if isinstance(e, dict) and isinstance(e.get("origin_server_ts"), int)]
    return min(stamps, default=None)


def _clock(event: dict[str, Any]) -> str:
    ts = event.get("origin_server_ts")
    return time.strftime("%H:%M UTC", time.gmtime(ts / 1000)) if isinstance(ts, int) else "an earlier time"
