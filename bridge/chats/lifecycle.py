"""A chat's life: opened by a citizen, given a puppet and an encrypted room, joined by an officer, closed.

    open() ──▶ waiting ──(claimed / assigned: officer invited)──(officer joins)──▶ active ──(close)──▶ closed
                  │
       first message / attachment, or a claim
                  └─ setup task: puppet (from the pool) ─▶ room dressed or created (nobody invited) ─▶ outbox released

A chat that has said nothing is only a row in the store: no Matrix user, device or room is made for it
until the citizen writes or an officer takes it, so opening chats costs the homeserver nothing.

Routing (bridge/officers/routing.py) listens through ``ChatListener``: it posts the chat in the
dispatch room, invites whoever claims it, and runs the timers.

Everything that must survive a crash is written before it is acted on; the
setup task is resumable and is restarted for unfinished chats at start-up.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
from typing import Any, Callable

import aiohttp

from .. import metrics
from ..background import Retries
from ..config import Config, Scenario
from ..matrix import rooms
from ..matrix.rooms import RoomPolicy
from ..matrix.crypto import Crypto, CryptoError, decrypt_file, encrypt_file
from ..matrix.homeserver import HomeserverApi, MatrixError, MediaTooLarge
from ..matrix.puppets import VISITOR_NAME, PuppetManager
from ..store import Store
from ..store.attachments import Attachment
from ..store.chats import ACTIVE, CLOSED, WAITING, Chat
from ..store.tickets import Ticket
from . import notices
from ..store.messages import OFFICER, SYSTEM, VISITOR, Message
from . import attachments, queue, training
from .hub import ChatHub
from ..journal import Journal, LogJournal

log = logging.getLogger(__name__)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_txn_id() -> str:
    return "precinct." + secrets.token_hex(12)


class ChatListener:
    """What the officers' side hears about a chat's life (no-ops here; routing overrides them)."""

    def queued(self, chat: Chat) -> None: ...

    def ready(self, chat: Chat, invited: tuple[str, ...] = ()) -> None:
        """The chat's room exists; ``invited``: whom its set-up invited already (the officer who had claimed it)."""

    def visitor_said(self, chat: Chat, body: str) -> None: ...

    def officer_said(self, chat: Chat, user_id: str) -> None: ...

    def joined(self, chat: Chat, user_id: str) -> None: ...

    def closed(self, chat: Chat) -> None: ...

    def ticket(self, ticket: Ticket) -> None: ...

    def transferred(self, before: Chat, chat: Chat) -> None: ...

    def present(self, chat: Chat, user_id: str, name: str) -> str:
        """How an officer is named to the citizen (display name, or an alias such as "Officer 3")."""
        return name

    def may_act(self, chat: Chat, user_id: str) -> bool:
        """Whether this user may be in the chat's room and give commands there."""
        return True


class ChatClosed(Exception):
    pass


class ChatsBusy(Exception):
    """The agency's queue is full: the chat is refused and nothing is created."""

    def __init__(self, agency: str) -> None:
        super().__init__(agency)
        self.agency = agency


class ChatNotReady(Exception):
    """The chat's Matrix side is still being set up."""


SETUP_WAIT_SECONDS = 20.0     # how long an attachment request waits for its chat's puppet before "not ready"
# Open chats whose devices are caught up at once at start-up: one after another, 200 conversations under way
# kept /health at "starting" (and the officers' replies waiting) 4 s after a crash (bench/load.py --restart).
RESUME_IN_FLIGHT = 8


class AttachmentUnavailable(Exception):
    """An attachment that cannot be given out whole: too large, unreadable, or not the bytes on record."""

    def __init__(self, reason: str, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


class ChatService:
    def __init__(self, config: Config, store: Store, api: HomeserverApi, crypto: Crypto, puppets: PuppetManager,
                 hub: ChatHub, wake_outbound: Callable[[], None], journal: Journal | None = None,
                 policy: RoomPolicy | None = None, retries: Retries | None = None) -> None:
        """``retries``: the pauses after a failed set-up, cut short when the homeserver answers again (app.py)."""
        self.config, self.store, self.api, self.crypto, self.puppets = config, store, api, crypto, puppets
        self.hub, self.wake_outbound = hub, wake_outbound
        self.journal: Journal = journal or LogJournal()
        self.bot = f"@{config.get('appservice.bot_localpart')}:{config.get('homeserver.server_name')}"
        self.policy = policy or RoomPolicy()       # ACL and room version of new chat rooms
        self._setup: dict[str, asyncio.Task] = {}
        self._resumed = False                        # set-ups wait for resume(): the homeserver is there then
        self.retries = retries or Retries()
        # queue_place's reads, valid while the store has not changed (store.db.mark()).
        self._places_mark: int | None = None
        self._places: dict[str, dict[str, int]] = {}
        self._estimates: dict[str, int | None] = {}
        self._started_ms = int(time.time() * 1000)   # pages reconnect after a restart: a full window from here
        self.listener = ChatListener()               # the officers' side, once wired (listen)

    def listen(self, listener: ChatListener) -> None:
        """Who hears of each chat's life (routing): one, given by the wiring (app.py) before anything runs.
        The two are built apart because routing itself needs this service."""
        self.listener = listener

    # ---- citizen actions -----------------------------------------------------------------------
    def open(self, topic_id: str | None, display_name: str | None, language: str | None) -> tuple[Chat, str]:
        topic = self.config.topic(topic_id)
        cap = self.config.max_waiting(topic.agency)
        if cap and self.store.chats.count_waiting(topic.agency) >= cap:
            raise ChatsBusy(topic.agency)
        token = secrets.token_urlsafe(32)            # 256 random bits; only its hash is stored
        with self.store.db.transaction():
            chat = self.store.chats.create(secrets.token_urlsafe(12), hash_token(token), topic.id, topic.agency,
                                           display_name, language)
            self.store.messages.add(chat.id, SYSTEM, "text", **notices.message("queued"))
            self.journal.chat_event(chat.id, "queued", None, number=chat.number, agency=chat.agency,
                                    topic=chat.topic, language=language, display_name=display_name)
        # No set-up yet: the puppet and room come with the first message or a claim (see needs_room).
        self.listener.queued(chat)
        return chat, token

    def open_practice(self, scenario: Scenario, agency_id: str, by: str, origin: str | None) -> tuple[Chat, str]:
        """A practice chat for this agency (training.py): queued like any chat, marked as training, its
        citizen played by the bridge from the scenario, which says its first line now (or, with
        ``training.LIVE``, by whoever is given the returned citizen's token)."""
        topic = next((t for t in self.config.topics if t.agency == agency_id), self.config.topics[0])
        token = secrets.token_urlsafe(32)
        with self.store.db.transaction():
            chat = self.store.chats.create(secrets.token_urlsafe(12), hash_token(token),
                                           topic.id, agency_id, training.CITIZEN_NAME, "en", training=scenario.id)
            self.store.messages.add(chat.id, SYSTEM, "text", **notices.message("queued"))
            self.journal.chat_event(chat.id, "queued", None, number=chat.number, agency=chat.agency,
                                    topic=chat.topic, language="en", training=scenario.id, started_by=by)
            self.journal.audit("chat.practice", by, target=chat.id, origin=origin, agency=agency_id,
                               scenario=scenario.id, number=chat.number)
        self.listener.queued(chat)
        self._practice_line(chat)
        return self.store.chats.refresh(chat), token

    def _practice_line(self, chat: Chat) -> None:
        """The scripted citizen's next line, if one is due (training.next_line)."""
        scenario = self.config.scenario(chat.training)
        chat = self.store.chats.refresh(chat)
        if scenario is None or chat.state == CLOSED:
            return
        due = training.next_line(scenario, self.store.messages.count_from(chat.id, VISITOR),
                                 self.store.messages.count_from(chat.id, OFFICER))
        if due is not None:
            index, text = due
            self.visitor_message(chat, training.client_id(index), text)

    def queue_place(self, chat: Chat) -> tuple[int | None, int | None]:
        """(position, estimated seconds) for a waiting chat; position 1 is answered next.

        Every waiting citizen asks when the queue moves (``queue_moved``), so the queue is read once per
        agency and the estimate once per topic until the store next changes, not once per citizen: a close
        with n waiting costs n look-ups in a dict, not n reads of the whole queue."""
        mark = self.store.db.mark()
        if mark is None or self._places_mark != mark:
            self._places, self._estimates, self._places_mark = {}, {}, mark
        places = self._places.get(chat.agency)
        if places is None:
            places = {c.id: i for i, c in enumerate(self.store.chats.waiting(chat.agency), start=1)}
            self._places[chat.agency] = places
        if chat.topic not in self._estimates:
            week_ago = int(time.time() * 1000) - 7 * 24 * 3600 * 1000
            self._estimates[chat.topic] = queue.estimate_seconds(self.store.chats.recent_waits(chat.topic, week_ago))
        return places.get(chat.id), self._estimates[chat.topic]

    def queue_moved(self, agency: str) -> None:
        """Tell every citizen waiting for this agency their new place (routing calls it when it reorders)."""
        for chat_id in self.store.chats.waiting_ids(agency):
            self.hub.queue(chat_id)

    def offline_message(self, topic_id: str, message: str, name: str | None, contact: str | None) -> Ticket:
        """A message left for the topic's agency (outside hours); it becomes a ticket in its dispatch room."""
        topic = self.config.topic(topic_id)
        with self.store.db.transaction():
            ticket = self.store.tickets.add(topic.agency, topic.id, message, name, contact)
            self.journal.audit("ticket.create", "visitor", target=f"T{ticket.number}", agency=topic.agency,
                               topic=topic.id)
        self.listener.ticket(ticket)
        return ticket

    def authenticate(self, token: str) -> Chat | None:
        return self.store.chats.by_token_hash(hash_token(token)) if token else None

    def visitor_message(self, chat: Chat, client_id: str, body: str) -> Message:
        """Store a visitor message and queue its Matrix send; the same client_id returns the first result."""
        existing = self.store.messages.by_client_id(chat.id, client_id)
        if existing:
            return existing
        if chat.state == CLOSED:
            raise ChatClosed()
        with self.store.db.transaction():
            msg = self.store.messages.add(chat.id, VISITOR, "text", body, sender=chat.display_name,
                                          client_id=client_id)
            self.store.outbox.add(chat.id, new_txn_id(), "m.room.message", {"msgtype": "m.text", "body": body},
                                  message_seq=msg.seq)
            self.journal.chat_event(chat.id, "message.visitor", "visitor", seq=msg.seq, body=body)
        self.hub.messages(chat.id)
        if not chat.room_id:
            self.start_setup(chat.id)          # the first words: now the chat gets its puppet and room
        self.wake_outbound()
        self.listener.visitor_said(chat, body)
        return msg

    async def visitor_attachment(self, chat: Chat, client_id: str, filename: str | None, data: bytes,
                                 mimetype: str, msgtype: str) -> Message:
        """Encrypt and upload a citizen's file as the puppet, then store and queue it like a message.

        The upload happens before the ack: a crash in between leaves an unused encrypted blob in the
        media repository, never a half-sent message; a retry with the same client_id is answered from
        the store.
        """
        existing = self.store.messages.by_client_id(chat.id, client_id)
        if existing:
            return existing
        if chat.state == CLOSED:
            raise ChatClosed()
        if not chat.puppet or not chat.room_id:
            # A first attachment sets the chat up like a first message; set-up owns choosing the puppet.
            chat = await self.wait_setup(chat.id, SETUP_WAIT_SECONDS)
        name = attachments.safe_filename(filename, mimetype)
        ciphertext, file_info = encrypt_file(data)
        mxc = await self.api.upload(chat.puppet, ciphertext, "encrypted")
        kind = "image" if msgtype == "m.image" else "file"
        content = {"msgtype": msgtype, "body": name, "filename": name,
                   "info": {"mimetype": mimetype, "size": len(data)}, "file": {"url": mxc, **file_info}}
        with self.store.db.transaction():
            msg = self.store.messages.add(chat.id, VISITOR, kind, name, sender=chat.display_name,
                                          client_id=client_id)
            digest = hashlib.sha256(data).hexdigest()
            self.store.attachments.add(Attachment(chat.id, msg.seq, name, mimetype, len(data), digest, mxc,
                                                  file_info))
            self.journal.chat_event(chat.id, "attachment", "visitor", seq=msg.seq, name=name, mimetype=mimetype,
                                    size=len(data), sha256=digest)
            self.store.outbox.add(chat.id, new_txn_id(), "m.room.message", content, message_seq=msg.seq)
        self.hub.messages(chat.id)
        self.wake_outbound()
        return msg

    async def attachment_bytes(self, chat: Chat, seq: int, max_bytes: int) -> tuple[Attachment, bytes] | None:
        """A chat's attachment, fetched from the media repository as its puppet and decrypted."""
        found = self.store.attachments.get(chat.id, seq)
        if found is None or not chat.puppet:
            return None
        try:
            data = await self.api.download(chat.puppet, found.mxc, max_bytes)
            if found.file_info:
                data = decrypt_file(data, found.file_info)
        except MediaTooLarge as e:
            raise AttachmentUnavailable(str(e), too_large=True) from None
        except (MatrixError, CryptoError, aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.warning("chat %s: attachment %s not given out: %s", chat.number, seq, e)
            raise AttachmentUnavailable(str(e)) from None
        if found.sha256 and hashlib.sha256(data).hexdigest() != found.sha256:
            log.error("chat %s: attachment %s does not match the SHA-256 on record", chat.number, seq)
            raise AttachmentUnavailable("the file does not match the SHA-256 on record")
        return found, data

    async def visitor_typing(self, chat: Chat, active: bool) -> bool:
        """Tell the chat's room the citizen is (not) typing; whether the homeserver was told (a chat
        with no room yet has no one to tell)."""
        chat = self.store.chats.refresh(chat)
        if not (chat.room_id and chat.puppet and chat.state != CLOSED):
            return False
        metrics.typing_sent()
        try:
            await self.api.typing(chat.puppet, chat.room_id, active)
        except Exception as e:  # typing is best effort
            log.info("typing for chat %s not sent: %s", chat.number, e)
            return False
        return True

    def officer_read(self, chat: Chat, event_id: str) -> None:
        """An officer's client marked the room read up to this event (an m.read receipt): the citizen sees
        "Read" under their messages up to it."""
        message = self.store.messages.by_event_id(event_id)
        if message is not None and message.chat_id == chat.id and self.store.chats.mark_read(chat.id, message.seq):
            self.hub.read(chat.id)

    async def visitor_read(self, chat: Chat, seq: int) -> bool:
        """The citizen's page showed the officers' messages up to ``seq``: the puppet marks the room read
        there, so the officer's client shows it read. Best effort; whether the homeserver was told."""
        chat = self.store.chats.refresh(chat)
        message = self.store.messages.get(chat.id, seq)
        if not (chat.room_id and chat.puppet and message is not None and message.sender_kind == OFFICER
                and message.event_id):
            return False
        try:
            await self.api.read_receipt(chat.puppet, chat.room_id, message.event_id)
        except Exception as e:
            log.info("read receipt for chat %s not sent: %s", chat.number, e)
            return False
        return True

    def page_ahead(self, chat: Chat, page_seq: int) -> bool:
        """The citizen's page shows messages up to ``page_seq`` and the store holds fewer: the bridge was restored
        from a backup taken before them (docs/deployment.md). The citizen is told, under a seq past the page's,
        so that what comes next is not taken for messages the page already shows (it keeps one message per seq);
        the officers are told once per chat. False (nothing done) if the page is not ahead or the chat is over."""
        chat = self.store.chats.refresh(chat)
        if chat.state == CLOSED or page_seq <= self.store.messages.last_seq(chat.id):
            return False
        first = not self.store.db.row("SELECT 1 AS x FROM messages WHERE chat_id = ? AND code = 'restored'", [chat.id])
        with self.store.db.transaction():
            self.store.messages.add(chat.id, SYSTEM, "text", **notices.message("restored"), at_least=page_seq + 1)
            self.journal.chat_event(chat.id, "restored", None, page_seq=page_seq)
            if first and chat.room_id and chat.puppet:
                self.notify_officers(chat, "The bridge was restored from a backup taken before the last messages of "
                                           "this chat: the citizen has been asked to repeat anything important.")
        self.hub.messages(chat.id)
        return True

    def close(self, chat: Chat, by: str, officer_name: str | None = None) -> None:
        """End the chat. A citizen's close is recorded here; whoever closes on the officers' side
        records its own ``closed`` entry (with who and why) in the same transaction."""
        if by == VISITOR:
            self._end(chat, notices.message("ended_by_visitor"), {"by": "visitor"}, "The citizen has ended the chat.",
                      actor="visitor")
        else:
            self._end(chat, notices.message("ended_by_officer", name=officer_name or "The officer"), None, None)

    def close_idle(self, chat: Chat) -> None:
        """The citizen did not answer the idle warning in time (the agency's timers)."""
        self._end(chat, notices.message("ended_idle"), {"by": "timeout", "reason": "citizen idle"},
                  f"Chat {chat.number} closed: the citizen did not reply.", always_tell_officers=True)

    def _end(self, chat: Chat, notice: dict[str, Any], record: dict[str, Any] | None, officers: str | None, *,
             actor: str | None = None, always_tell_officers: bool = False) -> None:
        """Every close: state, the citizen's system line, the record (``record``: the ``closed`` entry's
        details; None when the caller records it), the officers' notice, signals, the queue, the listener."""
        if chat.state == CLOSED:
            return
        with self.store.db.transaction():
            self.store.chats.set_state(chat.id, CLOSED)
            self.store.messages.add(chat.id, SYSTEM, "text", **notice)
            if record is not None:                 # an officer's close is recorded and audited by its command
                self.journal.chat_event(chat.id, "closed", actor, **record)
                self.journal.audit("chat.close", actor or "system", target=chat.id, origin=chat.room_id, **record)
            # Officers hear of it only if there is a room, or one is still owed for unsent messages.
            if officers and (always_tell_officers or chat.room_id or self.store.outbox.has_pending(chat.id)):
                self.store.outbox.add(chat.id, new_txn_id(), "m.room.message", {"msgtype": "m.notice", "body": officers})
        self.hub.messages(chat.id)
        self.hub.status(chat.id, CLOSED)
        if chat.state == WAITING:
            self.hub.forget(chat.id)
            self.queue_moved(chat.agency)
        self.wake_outbound()
        self.listener.closed(chat)

    def abandoned(self, now_ms: int) -> list[Chat]:
        """Waiting chats whose citizen has had no page open and written nothing for the agency's limit."""
        out = []
        for agency in self.config.agencies:
            limit = self.config.abandoned_seconds(agency.id)
            if not limit:
                continue
            for chat in self.store.chats.waiting(agency.id):
                connections = self.hub.connections(chat.id)
                if connections:              # a page open: not abandoned, whatever it last did (no read needed)
                    continue
                if queue.abandoned(now_ms, limit, connections, chat.created_ts, self._started_ms,
                                   self.store.messages.last_ts(chat.id, VISITOR), self.hub.last_seen(chat.id)):
                    out.append(chat)
        return out

    def expire(self, chat: Chat) -> None:
        """Close a waiting chat its citizen left; they see why if they come back, and the record says so."""
        if chat.state != WAITING:
            return
        self._end(chat, notices.message("ended_abandoned"),
                  {"by": "timeout", "cause": "abandoned", "reason": "citizen left the queue"},
                  "The citizen left the queue page; the chat has been closed.")

    def requeue(self, chat: Chat, officer: str, reason: str) -> bool:
        """The holder loses the chat (did not answer): back to the queue, the citizen told. False if
        ``officer`` no longer held it."""
        with self.store.db.transaction():
            if not self.store.chats.unclaim(chat.id, officer):
                return False
            self.store.messages.add(chat.id, SYSTEM, "text", **notices.message("requeued"))
            self.journal.chat_event(chat.id, "requeued", None, officer=officer, reason=reason)
            self.journal.audit("chat.requeue", "system", target=chat.id, origin=chat.room_id, officer=officer,
                               reason=reason)
        self.hub.messages(chat.id)
        self.hub.status(chat.id, WAITING)
        self.queue_moved(chat.agency)
        return True

    def set_priority(self, chat: Chat, high: bool, actor: str) -> None:
        with self.store.db.transaction():
            self.store.chats.mark(chat.id, priority=int(high))
            self.journal.chat_event(chat.id, "priority", actor, priority="high" if high else "normal")
            self.journal.audit("chat.priority", actor, target=chat.id, origin=chat.room_id,
                               priority="high" if high else "normal")
        self.queue_moved(chat.agency)

    def raise_emergency(self, chat: Chat, actor: str, **details: object) -> None:
        """The citizen's banner, high priority, the front of the queue (officers are alerted by routing)."""
        with self.store.db.transaction():
            self.store.chats.mark(chat.id, emergency=1, priority=1)
            self.store.messages.add(chat.id, SYSTEM, "text",
                                    **notices.message("emergency", number=self.config.get("site.emergency_number")))
            self.journal.chat_event(chat.id, "emergency", actor, **details)
            self.journal.audit("chat.emergency", actor or "system", target=chat.id, origin=chat.room_id, **details)
        self.hub.messages(chat.id)
        self.hub.status(chat.id, chat.state)
        self.queue_moved(chat.agency)

    def warn_idle(self, chat: Chat, now_ms: int) -> None:
        """The citizen is told the chat closes soon without a reply; the officers are told they were."""
        with self.store.db.transaction():
            self.store.chats.mark(chat.id, idle_warned_ts=now_ms)
            self.store.messages.add(chat.id, SYSTEM, "text", **notices.message("idle_warning"))
            self.journal.chat_event(chat.id, "idle_warning", None)
        self.hub.messages(chat.id)
        self.notify_officers(chat, "The citizen has been warned that the chat closes soon without a reply.")

    def transfer(self, chat: Chat, agency_id: str, agency_name: str, to: str, by: str, note: str | None) -> None:
        """Back to waiting, now for another agency (``to``: its id, or one of its officers); the citizen is told.

        Call inside the transaction that also records the transfer."""
        before = self.store.chats.refresh(chat)
        with self.store.db.transaction():
            self.store.chats.set_transfer(chat.id, agency_id, to, by, note)
            self.store.messages.add(chat.id, SYSTEM, "text", **notices.message("transferred", agency=agency_name))
        self.hub.messages(chat.id)
        self.hub.status(chat.id, WAITING)
        self.queue_moved(agency_id)
        self.listener.transferred(before, self.store.chats.refresh(chat))

    # ---- Matrix-side happenings ------------------------------------------------------------------
    async def officer_joined(self, chat: Chat, user_id: str, name: str) -> None:
        """Announce an officer's arrival to the citizen; the first one makes the chat active."""
        with self.store.db.transaction():
            if chat.state == WAITING:
                self.store.chats.set_state(chat.id, ACTIVE, officer=user_id)
            if chat.state != CLOSED:
                self.store.messages.add(chat.id, SYSTEM, "text", **notices.message("officer_joined", name=name),
                                        sender=name, sender_mxid=user_id)
                self.journal.chat_event(chat.id, "officer.joined", user_id, name=name)
        self.hub.messages(chat.id)
        if chat.state == WAITING:
            if chat.answered_ts is None:          # a chat back in the queue was answered once already
                metrics.chat_answered(chat.agency, chat.created_ts)
            self.hub.status(chat.id, ACTIVE)
            self.queue_moved(chat.agency)      # everyone behind moves up
        self.listener.joined(chat, user_id)
        try:
            # Share the room key now, so the officer's first read does not wait for key exchange.
            await self.crypto.share_room_key(chat.puppet, chat.room_id, joined=[user_id])  # type: ignore[arg-type]
        except Exception as e:
            log.warning("room key for chat %s not shared on join (will be on next send): %s", chat.number, e)

    def officer_message(self, chat: Chat, kind: str, body: str, user_id: str, name: str, event_id: str,
                        ts: int | None, target_seq: int | None = None, *, device: str | None = None,
                        attachment: Attachment | None = None) -> Message:
        """Store (and record) an officer's message; call inside the transaction that marks its event done.
        ``attachment``: the file behind an image/file message (its ``seq`` is filled in here)."""
        with self.store.db.transaction():
            msg = self.store.messages.add(chat.id, OFFICER, kind, body, sender=name, sender_mxid=user_id,
                                          event_id=event_id, target_seq=target_seq, ts=ts)
            if attachment is not None:
                attachment.seq = msg.seq
                self.store.attachments.add(attachment)
                self.journal.chat_event(chat.id, "attachment", user_id, seq=msg.seq, device=device,
                                        event_id=event_id, name=attachment.name, mimetype=attachment.mimetype,
                                        size=attachment.size, sha256=attachment.sha256)
            else:
                self.journal.chat_event(chat.id, "message.officer", user_id, seq=msg.seq, device=device,
                                        event_id=event_id, format=kind, target_seq=target_seq, sender_name=name,
                                        body=body)
        metrics.message_bridged(metrics.TO_CITIZEN)
        if self.store.messages.count_from(chat.id, OFFICER) == 1:
            metrics.first_response(chat.agency, chat.created_ts, msg.ts)
        self.hub.messages(chat.id)
        self.listener.officer_said(chat, user_id)
        if chat.training:
            self._practice_line(chat)
        return msg

    async def attachment_sha256(self, chat: Chat, mxc: str, file_info: dict | None, max_bytes: int) -> str | None:
        """SHA-256 of an officer's file as the citizen will get it (downloaded and decrypted), for the record;
        None when it cannot be fetched now (the record then says so rather than holding the chat up)."""
        if not chat.puppet:
            return None
        try:
            data = await self.api.download(chat.puppet, mxc, max_bytes)
            if file_info:
                data = decrypt_file(data, file_info)
            return hashlib.sha256(data).hexdigest()
        except Exception as e:
            log.warning("chat %s: attachment %s not hashed for the record: %s", chat.number, mxc, e)
            return None

    def notify_officers(self, chat: Chat, text: str, reply_to: str | None = None) -> None:
        """A notice in the room from the visitor's puppet (never shown to the citizen); ``reply_to``: the event it
        is about, which the officers' clients then show above it."""
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        self.store.outbox.add(chat.id, new_txn_id(), "m.room.message", content)
        self.wake_outbound()

    # ---- setup -----------------------------------------------------------------------------------
    async def wait_setup(self, chat_id: str, timeout: float) -> Chat:
        """Start the chat's set-up if needed and wait (at most ``timeout``) for it; ChatNotReady if it is not done."""
        self.start_setup(chat_id)
        task = self._setup.get(chat_id)
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                pass
        chat = self.store.chats.get(chat_id)
        if chat is None or not chat.puppet or not chat.room_id:
            raise ChatNotReady()
        return chat

    @staticmethod
    def needs_room(chat: Chat, unsent: bool) -> bool:
        """Whether a chat without a room must be set up: it has something to send, an officer took it, or its
        set-up had begun. A chat that never said anything and nobody took stays a row in the store."""
        return unsent or (chat.state != CLOSED and bool(chat.claimed_by or chat.puppet))

    def start_setup(self, chat_id: str) -> None:
        if not self._resumed:
            return        # the bridge has not reached the homeserver yet: resume() sets up every chat that needs it
        task = self._setup.get(chat_id)
        if task is None or task.done():
            self._setup[chat_id] = asyncio.create_task(self._setup_with_retry(chat_id))

    async def _setup_with_retry(self, chat_id: str) -> None:
        delay = 0.5
        while True:
            try:
                await self.setup(chat_id)
                self._setup.pop(chat_id, None)
                if not self._setup:
                    # Once no chat is being set up: in a burst, making the next puppets (ten homeserver round
                    # trips each, a room among them) competed with the burst's own rooms and invites.
                    self.puppets.refill_pool()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # Say why (a timeout's message is empty), and spread the retries of a burst (jitter).
                wait = delay * random.uniform(0.5, 1.5)
                log.warning("setting up chat %s failed (retrying in %.1fs): %s: %s", chat_id, wait,
                            type(e).__name__, e)
                await self.retries.pause(wait)
                delay = min(delay * 2, 30)

    async def setup(self, chat_id: str) -> None:
        chat = self.store.chats.get(chat_id)
        if chat is None or chat.room_id:
            return
        resumed = chat.puppet is not None     # an earlier set-up got as far as its room, perhaps
        puppet = await self.puppets.for_chat(chat.id)
        if chat.puppet != puppet.user_id:
            self.store.chats.set_puppet(chat.id, puppet.user_id)
        topic = self.config.topic(chat.topic)
        name = training.room_name(chat.number, topic.label, chat.training)
        # Nobody before a claim; a chat set up because an officer claimed it invites them with its room (in
        # createRoom itself when the pool is empty): a separate invite after the room cost a round trip of
        # the busy homeserver on the claim's path. Whoever takes it later is invited by the listener.
        officers = [chat.claimed_by] if chat.claimed_by else []
        # A puppet made now is a user only: its device and keys go up while it is named and its room is made
        # (the citizen's messages wait for them: the outbound pump sends once the room is stored, after this).
        keys = [] if puppet.ready else [self.puppets.ensure_ready(puppet)]
        if puppet.room_id:                     # from the pool: the room exists, give it this chat's face
            room_id = puppet.room_id
            renamed = [self.api.set_display_name(puppet.user_id, chat.display_name)] if chat.display_name else []
            await asyncio.gather(rooms.dress_chat_room(self.api, puppet.user_id, room_id, name, officers),
                                 *renamed, *keys)
        else:
            (room_id, officers), *_ = await asyncio.gather(
                self._made_room(chat, puppet.user_id, name, officers, resumed), *keys)
        self.store.chats.set_room(chat.id, room_id)
        log.info("chat %s ready in %s", chat.number, room_id)
        self.listener.ready(self.store.chats.refresh(chat), tuple(officers))
        self.wake_outbound()
        if self.store.chats.refresh(chat).state != CLOSED:   # a closed chat's puppet is not loaded again
            await self.crypto.restore_room(puppet.user_id, room_id)

    async def _made_room(self, chat: Chat, puppet: str, name: str, officers: list[str],
                         resumed: bool) -> tuple[str, list[str]]:
        """A room made for the chat by its own puppet, and whom its creation invited.

        Named first: the puppet's membership in the new room carries the name (a rename later is an event).
        Only a resumed set-up can find a room made already (a crash between createRoom and storing its ID),
        so a puppet made now goes from its name straight to its room."""
        named = self.api.set_display_name(puppet, chat.display_name or VISITOR_NAME)
        if resumed:
            found, _ = await asyncio.gather(rooms.find_chat_room(self.api, puppet), named)
            if found is not None:
                return found, []       # made before a crash, perhaps before the claim: invite again
        else:
            await named
        room_id = await rooms.create_chat_room(self.api, puppet, rooms.chat_room_request(
            name, officers, self.bot, puppet, self.policy.version, self.policy.acl))
        return room_id, officers

    async def resume(self) -> None:
        """At start-up, once the homeserver answers: finish interrupted set-ups, set up the chats that spoke before
        it answered, and reload the devices of open chats."""
        self._resumed = True
        unsent = set(self.store.outbox.chats_pending())
        for chat in self.store.chats.without_room():
            # A chat closed before its room existed still owes the officers what the citizen was told was sent;
            # a silent one nobody has taken gets nothing until it speaks or is claimed.
            if self.needs_room(chat, chat.id in unsent):
                self.start_setup(chat.id)
        slots = asyncio.Semaphore(RESUME_IN_FLIGHT)

        async def restore(chat: Chat) -> None:
            async with slots:
                try:
                    await self.crypto.catch_up(chat.puppet)  # type: ignore[arg-type]
                    await self.crypto.restore_room(chat.puppet, chat.room_id)  # type: ignore[arg-type]
                except Exception as e:
                    log.warning("could not restore chat %s: %s", chat.number, e)
        await asyncio.gather(*(restore(chat) for chat in self.store.chats.open_with_room()))

    async def stop(self) -> None:
        for task in self._setup.values():
            task.cancel()
        await asyncio.gather(*self._setup.values(), return_exceptions=True)
