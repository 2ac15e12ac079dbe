"""Visitor API v1: the public contract citizens' browsers speak (see docs/visitor-api.md).

Validation and wire format live here; what a message *does* lives in
``chats.lifecycle``.  Every client mistake gets ``{"error", "message"}`` (an HTTP
status, or an ``error`` frame on the WebSocket) and the connection and the chat
carry on.

Nothing tells the page "stored" before the store's durability barrier has passed (store/db.py): HTTP
answers wait for it in ``web.server``; on the WebSocket, acks and message frames (the page takes its own
message coming back as delivered) wait for it here.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from .. import client_input, metrics
from ..background import Mailbox
from ..journal import Journal, LogJournal
from ..client_address import ClientAddresses
from ..config import Config
from ..limits import Limit, Refusal
from ..chats.lifecycle import AttachmentUnavailable, ChatClosed, ChatNotReady, ChatsBusy, ChatService
from ..chats import attachments
from ..chats import hours
from ..records.retention import Refused, Retention
from ..resources import OpenFiles, Shortages, is_shortage
from ..store import Store
from ..store.attachments import Attachment
from ..store.chats import Chat
from ..store.db import StoreNotDurable, is_full
from ..store.messages import Message
from . import branding, transcript
from .flood import ChatRates, ReadCoalescer, SocketCounts, TypingCoalescer
from .pow import PowGate, PowRefused

log = logging.getLogger(__name__)

MAX_CONTACT = 200            # an e-mail address or phone number, with room for a note

AUTH_TIMEOUT = 15.0
MAX_CLIENT_ID = 128
MAX_FRAME_BYTES = 64 * 1024
MAX_JSON_BYTES = 64 * 1024
BUSY_RETRY_AFTER = 60       # seconds a "busy" answer asks the page to wait before trying again
HISTORY_PAGE = 500          # messages per GET …/messages; "more": true says ask again from the last seq
STATUS_EVERY = 1.0          # seconds between a connection's queue-place frames, however fast the queue moves
REPLIES_PENDING = 256       # answers on one WebSocket waiting for the disk before its next frame is read
MAX_AHEAD = 10_000          # how far past the store a page may say it has read and be believed restored (page_ahead)


class _ClientGone(Exception):
    """The client went away (or broke the frame size limit) before authenticating."""


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.extra = extra                     # more fields for the page (the numbers to call when busy)
        self.client_id: str | None = None      # set when the error is about one of the citizen's messages
        self.retry_after: int | None = None    # set on rate_limited: whole seconds until it may be tried again

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.error, "message": self.message, **self.extra}
        headers = {}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
            headers["Retry-After"] = str(self.retry_after)
        return web.json_response(body, status=self.status, headers=headers)

    def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "error", "error": self.error, "message": self.message}
        if self.client_id is not None:
            frame["client_id"] = self.client_id
        if self.retry_after is not None:
            frame["retry_after"] = self.retry_after
        return frame


def store_unavailable() -> ApiError:
    """The store cannot get anything to disk (store/db.py): nothing is acknowledged; try again later."""
    e = ApiError(503, "store_unavailable", "We cannot save anything right now, so this was not sent. Please try again "
                                     "in a few minutes; in an emergency, call the emergency number.")
    e.retry_after = 60
    return e


def store_full() -> ApiError:
    """The store's disk is full (store/db.py ``full()``): this was not stored (its write was rolled back whole);
    the same message, with the same client_id, can be sent again once there is space."""
    e = ApiError(503, "store_full", "We cannot save anything right now, so this was not sent. Please try again "
                 "in a few minutes; in an emergency, call the emergency number.")
    e.retry_after = 60
    return e


def _client_id_of(data: str) -> str | None:
    """The client_id of a message frame, if it has a sensible one (to tie an error frame to the message)."""
    try:
        frame = client_input.parse_json(data)
    except (client_input.NotJson, client_input.BadJson):
        return None
    cid = frame.get("client_id") if isinstance(frame, dict) else None
    return cid if isinstance(cid, str) and 0 < len(cid) <= MAX_CLIENT_ID else None


def message_frame(m: Message, attachment: Attachment | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "message", "seq": m.seq, "from": m.sender_kind, "kind": m.kind,
                             "sender": m.sender or _default_sender(m.sender_kind), "body": m.body, "ts": m.ts}
    if attachment is not None:
        frame["attachment"] = {"name": attachment.name, "mimetype": attachment.mimetype, "size": attachment.size,
                               "url": f"/api/v1/chats/{m.chat_id}/attachments/{m.seq}"}
    if m.target_seq is not None:
        frame["target"] = m.target_seq
    if m.client_id is not None:
        frame["client_id"] = m.client_id
    if m.code is not None:
        # A system line the page shows in the citizen's language; body stays the English text.
        frame["code"], frame["params"] = m.code, m.notice_params
    return frame


def _parse_json(raw: bytes | str, what: str) -> Any:
    try:
        return client_input.parse_json(raw)
    except client_input.NotJson:
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON.")
    except client_input.BadJson as e:
        raise ApiError(400, "invalid_json", f"{what} is not accepted: {e}")


def _count(value: Any, name: str, text: bool, meaning: str) -> int:
    """A whole number from the client (ASCII digits in text, a JSON integer in JSON), 0 to 2^63 - 1."""
    try:
        return client_input.whole_number(value, text=text)
    except client_input.BadNumber:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0 or \
                isinstance(value, str) and value.startswith("-"):
            raise ApiError(400, "bad_request", f"'{name}' must not be negative.")
        raise ApiError(400, "bad_request", f"'{name}' must be a whole number below 2^63 ({meaning}).")


def _megabytes(n: int) -> str:
    """A size limit as a citizen reads it: "10", "2.5", "0.5" (MiB, never rounded down to 0)."""
    return f"{n / (1024 * 1024):.1f}".removesuffix(".0")


def _default_sender(kind: str) -> str:
    return {"visitor": "You", "officer": "Officer", "system": "Precinct"}.get(kind, kind)


class VisitorApi:
    def __init__(self, config: Config, store: Store, chats: ChatService, *, retention: Retention | None = None,
                 on_erased: Callable[[], None] | None = None, pow_gate: PowGate | None = None,
                 journal: Journal | None = None, addresses: ClientAddresses | None = None,
                 open_files: OpenFiles | None = None, shortages: Shortages | None = None) -> None:
        self.config, self.store, self.chats = config, store, chats
        self.open_files = open_files            # None: no descriptor reserve is kept (tests of other things)
        self.shortages = shortages or Shortages(open_files)
        self.pow = pow_gate or PowGate.from_config(config)
        self.retention, self.on_erased = retention, on_erased
        self.journal: Journal = journal or LogJournal()
        self.client_address = addresses or ClientAddresses(config.get("web.trusted_proxies"))
        self.max_chars = config.get("web.max_message_chars")
        self.max_attachment = config.get("attachments.max_bytes")
        self.allowed_types = set(config.get("attachments.allowed_types"))
        self.max_name = config.get("web.max_display_name_chars")
        self.public_url = config.get("web.public_url").rstrip("/")
        self._sockets: set[web.WebSocketResponse] = set()
        self.rates = ChatRates(config.get("web.chat_message_burst"), config.get("web.chat_messages_per_minute"))
        self.chat_limit = Limit("chats", config.rate("limits.chats_per_address"), config.rate("limits.chats_overall"))
        self.offline_limit = Limit("offline_messages", config.rate("limits.offline_messages_per_address"),
                                   config.rate("limits.offline_messages_overall"))
        self.upload_limit = Limit("uploads", config.rate("limits.uploads_per_address"),
                                  config.rate("limits.uploads_overall"))
        self.typing = TypingCoalescer(lambda chat, active: self.chats.visitor_typing(chat, active),
                                      config.get("web.typing_interval_seconds"))
        self.reads = ReadCoalescer(lambda chat, seq: self.chats.visitor_read(chat, seq))
        self.socket_counts = SocketCounts(config.get("web.max_sockets_per_chat"),
                                          config.get("web.max_sockets_per_address"))
        self.embed_origins: list[str] = list(config.get("web.embed_origins"))
        own = urlsplit(self.public_url)
        self.allowed_origins = {f"{own.scheme}://{own.netloc}", *self.embed_origins}

    def routes(self, app: web.Application) -> None:
        app.on_shutdown.append(self._close_sockets)
        app.on_cleanup.append(lambda app: self.typing.close())
        app.router.add_get("/api/v1/site", self.site)
        app.router.add_get("/api/v1/challenge", self.challenge)
        app.router.add_post("/api/v1/chats", self.create_chat)
        app.router.add_post("/api/v1/offline_messages", self.post_offline_message)
        app.router.add_get("/api/v1/chats/{chat_id}", self.get_chat)
        app.router.add_get("/api/v1/chats/{chat_id}/ws", self.websocket)
        app.router.add_get("/api/v1/chats/{chat_id}/messages", self.get_messages)
        app.router.add_post("/api/v1/chats/{chat_id}/messages", self.post_message)
        app.router.add_post("/api/v1/chats/{chat_id}/close", self.post_close)
        app.router.add_delete("/api/v1/chats/{chat_id}", self.delete_chat)
        app.router.add_post("/api/v1/chats/{chat_id}/feedback", self.post_feedback)
        app.router.add_post("/api/v1/chats/{chat_id}/attachments", self.post_attachment)
        app.router.add_get("/api/v1/chats/{chat_id}/attachments/{seq}", self.get_attachment)
        app.router.add_get("/api/v1/chats/{chat_id}/transcript", self.get_transcript)

    # ---- validation --------------------------------------------------------------------------------
    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            raw = await client_input.read_body(request, MAX_JSON_BYTES)
        except client_input.BodyTooLarge:
            raise ApiError(413, "too_large", "The request is too large.")
        if not raw:
            return {}
        data = _parse_json(raw, "The request body")
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
        return data

    def _optional_name(self, data: dict[str, Any], key: str) -> str | None:
        """A name officers will see: refused when it holds characters that would make it show otherwise."""
        name = self._optional_text(data, key, self.max_name)
        hidden = client_input.hidden_characters(name or "")
        if hidden:
            raise ApiError(400, "bad_request", f"'{key}' may not contain invisible or direction-changing "
                                               f"characters ({', '.join(hidden)}).")
        return name

    def _optional_text(self, data: dict[str, Any], key: str, limit: int) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ApiError(400, "bad_request", f"'{key}' must be a string.")
        value = value.strip()
        if len(value) > limit:
            raise ApiError(400, "bad_request", f"'{key}' is longer than {limit} characters.")
        return value or None

    def _message_fields(self, data: dict[str, Any]) -> tuple[str, str]:
        client_id, body = data.get("client_id"), data.get("body")
        if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID:
            raise ApiError(400, "bad_request", f"'client_id' must be a non-empty string of at most {MAX_CLIENT_ID} "
                                               "characters, unique per message.")
        if not isinstance(body, str) or not body.strip():
            raise ApiError(400, "bad_request", "'body' must be a non-empty string.")
        if len(body) > self.max_chars:
            raise ApiError(413, "message_too_long", f"The message is {len(body)} characters long; the limit is "
                                                    f"{self.max_chars}. Please split it into shorter messages.")
        return client_id, body

    def _chat_for(self, request: web.Request, token: str | None = None) -> Chat:
        if token is None:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header.startswith("Bearer ") else ""
        chat = self.chats.authenticate(token)
        if chat is None:
            raise ApiError(401, "unauthorized", "The chat token is missing or not valid.")
        if chat.id != request.match_info["chat_id"]:
            raise ApiError(404, "not_found", "No such chat.")
        return chat

    @staticmethod
    def _since(value: Any, from_query: bool = False) -> int:
        """In a query string 'since' is text; in a JSON frame it must be a JSON integer."""
        if value is None or (from_query and value == ""):
            return 0
        return _count(value, "since", from_query, "the last seq you have, 0 at first")

    def _state(self, chat: Chat) -> dict[str, Any]:
        """The chat as GET /api/v1/chats/{id} and the ready frame describe it (queue place while waiting)."""
        status = {k: v for k, v in self._status(chat).items() if k != "type"}
        return {"chat_id": chat.id, "number": chat.number, "topic": chat.topic, "read_seq": chat.read_seq or 0,
                **status}

    def _status(self, chat: Chat) -> dict[str, Any]:
        position, estimate = self.chats.queue_place(chat) if chat.state == "waiting" else (None, None)
        frame = queue_frame(chat.state, position, estimate)
        frame["emergency"] = bool(chat.emergency)      # the page shows the emergency banner while true
        return frame

    # ---- HTTP --------------------------------------------------------------------------------------
    async def site(self, request: web.Request) -> web.Response:
        """What the citizen page shows before a chat: names, emergency number, topics (no secrets)."""
        c = self.config
        return web.json_response({
            "service_name": c.get("site.service_name") or None, "emergency_number": c.get("site.emergency_number"),
            "phone_number": c.get("site.phone_number") or None,
            "logo_url": branding.logo_url(c),
            "welcome_text": c.get("site.welcome_text") or None, "review_text": c.get("site.review_text") or None, "privacy_url": c.get("site.privacy_url") or None,
            "require_consent": c.get("site.require_consent"), "quick_exit_url": c.get("site.quick_exit_url"),
            "max_message_chars": self.max_chars,
            "attachments": {"max_bytes": self.max_attachment, "types": sorted(self.allowed_types)},
            "topics": [{"id": t.id, "label": t.label, "open": hours.is_open(c.agency(t.agency).hours)}
                       for t in c.topics],
            "proof_of_work": {"required": self.pow.enabled},
        }, headers={"Cache-Control": "no-cache"})

    async def challenge(self, request: web.Request) -> web.Response:
        """A signed proof-of-work challenge for POST /api/v1/chats (nothing is stored, no cookie is set)."""
        if not self.pow.enabled:
            raise ApiError(404, "pow_disabled", "This service asks for no proof of work; start the chat directly.")
        return web.json_response(self.pow.issue(), headers={"Cache-Control": "no-store"})

    async def post_offline_message(self, request: web.Request) -> web.Response:
        """Outside business hours (or whenever the citizen prefers): a message officers take later."""
        data = await self._json(request)
        topic = data.get("topic")
        if not isinstance(topic, str) or topic not in {t.id for t in self.config.topics}:
            raise ApiError(400, "bad_request", f"'topic' must be one of {', '.join(t.id for t in self.config.topics)}.")
        message = data.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "bad_request", "'message' must be a non-empty string.")
        if len(message) > self.max_chars:
            raise ApiError(413, "too_large", f"'message' is longer than {self.max_chars} characters.")
        name = self._optional_name(data, "name")
        contact = self._optional_text(data, "contact", MAX_CONTACT)
        if refusal := self.offline_limit.take(self.client_address(request)):
            raise self._limited(self.offline_limit, refusal, "Too many messages are being left right now, so "
                                "yours was not sent. Please try again in a few minutes.")
        ticket = self.chats.offline_message(topic, message.strip(), name, contact)
        return web.json_response({"ticket": ticket.number}, status=201)

    async def create_chat(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        if self.config.get("site.require_consent") and data.get("consent") is not True:
            raise ApiError(400, "consent_required", "Please confirm that you have read the privacy notice "
                                                    "(\"consent\": true) before starting a chat.")
        topic = self._optional_text(data, "topic", 64)
        if topic is not None and topic not in {t.id for t in self.config.topics}:
            raise ApiError(400, "bad_request", f"Unknown topic {topic!r}; choose one of "
                                               f"{', '.join(t.id for t in self.config.topics)}.")
        name = self._optional_name(data, "display_name")
        language = self._optional_text(data, "language", 16)
        try:
            self.pow.check(data.get("pow"))     # before anything that costs more than a hash
        except PowRefused as e:
            metrics.visitor_refused(e.error)
            raise ApiError(e.status, e.error, e.message)
        if self.open_files is not None and self.open_files.short_for_chats():
            # The chats already open keep the descriptors left (bridge/resources.py).
            self.shortages.report("new chats", "new chats answered 503 busy until descriptors are free again")
            metrics.visitor_refused("busy_resources")
            raise self.busy()
        address = self.client_address(request)
        block = self.store.sources.blocked(address)
        if block is not None:
            self.pow.creation_refused()
            metrics.visitor_refused("blocked")
            self.journal.refused("chat.create", "visitor", source=address, origin="web", target=block.chat_id,
                                 reason="blocked")
            raise ApiError(403, "blocked", "New chats from this connection are refused for a while. "
                                           "In an emergency, call the emergency number.")
        if refusal := self.chat_limit.take(address):
            raise self._creation_refused(address, refusal)
        try:
            chat, token = self.chats.open(topic, name, language)
        except ChatsBusy:
            self.pow.creation_refused()
            raise self._busy()
        self.store.sources.remember(chat.id, address)
        ws_url = self.public_url.replace("http", "ws", 1) + f"/api/v1/chats/{chat.id}/ws"
        return web.json_response({"chat_id": chat.id, "token": token, "ws_url": ws_url, "number": chat.number},
                                 status=201)

    def _limited(self, limit: Limit, refusal: Refusal, message: str, **extra: Any) -> ApiError:
        """429 rate_limited with Retry-After, counted by which bucket refused (e.g. chats_per_address)."""
        metrics.visitor_refused(f"{limit.name}_{refusal.scope}")
        e = ApiError(429, "rate_limited", message, **extra)
        e.retry_after = refusal.retry_after
        return e

    def _creation_refused(self, address: str, refusal: Refusal) -> ApiError:
        """The one path of a new chat refused by a limit: counted, audited (one entry per source per window),
        answered with the numbers to call; nothing is stored for the chat."""
        self.pow.creation_refused()         # the proof of work's difficulty rises while creation is refused
        self.journal.refused("chat.create", "visitor", source=address, origin="web",
                             reason=f"{self.chat_limit.name}_{refusal.scope}")
        phone, emergency = self.config.get("site.phone_number"), self.config.get("site.emergency_number")
        return self._limited(self.chat_limit, refusal, (
            "Too many chats are being started right now, so yours could not start. Please try again in a few "
            f"minutes{f' or phone us on {phone}' if phone else ''}. In an emergency call {emergency}."),
            phone_number=phone or None, emergency_number=emergency)

    def _busy(self) -> ApiError:
        """The queue is full: a clear answer the page translates, with the numbers to call instead."""
        phone, emergency = self.config.get("site.phone_number"), self.config.get("site.emergency_number")
        message = ("All our officers are busy and the queue is full, so a new chat cannot start now. Please try "
                   f"again in a few minutes{f' or phone us on {phone}' if phone else ''}. "
                   f"In an emergency call {emergency}.")
        busy = ApiError(503, "busy", message, phone_number=phone or None, emergency_number=emergency)
        busy.retry_after = BUSY_RETRY_AFTER
        return busy

    def busy(self) -> ApiError:
        """The service itself is short of resources (bridge/resources.py): the same "busy" the page knows,
        with the numbers to call; nothing was stored."""
        phone, emergency = self.config.get("site.phone_number"), self.config.get("site.emergency_number")
        message = ("We are very busy right now, so a new chat cannot start. Please try again in a few minutes"
                   f"{f' or phone us on {phone}' if phone else ''}. In an emergency call {emergency}.")
        busy = ApiError(503, "busy", message, phone_number=phone or None, emergency_number=emergency)
        busy.retry_after = BUSY_RETRY_AFTER
        return busy

    async def get_chat(self, request: web.Request) -> web.Response:
        return web.json_response(self._state(self._chat_for(request)))

    async def get_messages(self, request: web.Request) -> web.Response:
        chat = self._chat_for(request)
        since = self._since(request.query.get("since"), from_query=True)
        chat = self.store.chats.refresh(chat)
        page = self.store.messages.since(chat.id, since, limit=HISTORY_PAGE + 1)
        return web.json_response({"state": chat.state, "more": len(page) > HISTORY_PAGE,
                                  "messages": [self._frame(m) for m in page[:HISTORY_PAGE]]})

    async def post_message(self, request: web.Request) -> web.Response:
        chat = self._chat_for(request)
        client_id, body = self._message_fields(await self._json(request))
        msg = self._admit_and_send(chat, client_id, body)
        return web.json_response({"client_id": client_id, "seq": msg.seq}, status=201)

    async def post_close(self, request: web.Request) -> web.Response:
        chat = self._chat_for(request)
        self.chats.close(chat, by="visitor")
        return web.json_response({"state": "closed"})

    async def delete_chat(self, request: web.Request) -> web.Response:
        """The citizen's erasure request: 202 once the personal data is gone from the store and the
        redactions are queued; 409 legal_hold (refusal recorded) or chat_open."""
        chat = self._chat_for(request)
        if self.retention is None:
            raise ApiError(503, "unavailable", "Erasure is not available on this service.")
        try:
            erased = self.retention.erase(chat, actor="visitor", origin="web", source=self.client_address(request))
        except Refused as e:
            raise ApiError(409, e.error, e.message)
        if self.on_erased:
            self.on_erased()
        return web.json_response({"state": "erased", "already": erased.already}, status=202)

    async def post_attachment(self, request: web.Request) -> web.Response:
        chat = self.store.chats.get(self._chat_for(request).id)
        assert chat is not None
        client_id = request.query.get("client_id", "")
        if not client_id or len(client_id) > MAX_CLIENT_ID:
            raise ApiError(400, "bad_request", "'client_id' (query) must be a non-empty string, unique per message.")
        if refusal := self.upload_limit.take(self.client_address(request)):     # before a byte of the file is read
            raise self._limited(self.upload_limit, refusal, "Too many files are being sent right now; please "
                                "send this one again in a few minutes.")
        limit = self.max_attachment
        try:
            data = await client_input.read_body(request, limit)      # to its end: read(n) stops at the buffer
        except client_input.BodyTooLarge:
            raise ApiError(413, "file_too_large", f"Files can be at most {_megabytes(limit)} MB.")
        if not data:
            raise ApiError(400, "bad_request", "The file is empty.")
        kind = attachments.sniff(data)
        if kind is None or kind[0] not in self.allowed_types:
            allowed = ", ".join(sorted(t.split("/")[1].upper() for t in self.allowed_types))
            raise ApiError(415, "unsupported_type", f"Only these kinds of file can be sent: {allowed}.")
        try:
            msg = await self.chats.visitor_attachment(chat, client_id, request.query.get("filename"), data, *kind)
        except ChatClosed:
            raise ApiError(409, "chat_closed", "This chat has ended; start a new chat to write again.")
        except ChatNotReady:
            raise ApiError(409, "not_ready", "Your chat is still being set up; please try again in a moment.")
        return web.json_response({"client_id": client_id, "seq": msg.seq}, status=201)

    async def get_attachment(self, request: web.Request) -> web.StreamResponse:
        chat = self.store.chats.get(self._chat_for(request).id)
        assert chat is not None
        try:
            seq = client_input.whole_number(request.match_info["seq"], text=True)
        except client_input.BadNumber:
            raise ApiError(404, "not_found", "No such attachment.")
        try:
            found = await self.chats.attachment_bytes(chat, seq, self.max_attachment * 4)
        except AttachmentUnavailable as e:
            if e.too_large:
                raise ApiError(413, "file_too_large", "This file is too large to be fetched here.")
            raise ApiError(502, "attachment_unavailable",
                           "This file cannot be fetched intact right now; please ask the officer to send it again.")
        if found is None:
            raise ApiError(404, "not_found", "No such attachment.")
        attachment, data = found
        # Shown inline only if it is a type we know to be harmless; anything else is a download.
        mimetype = attachment.mimetype if attachment.mimetype in ("image/jpeg", "image/png", "image/webp",
                                                                  "application/pdf") else "application/octet-stream"
        return web.Response(body=data, content_type=mimetype, headers={
            "Content-Disposition": f'attachment; filename="{attachments.safe_filename(attachment.name, mimetype)}"',
            "Cache-Control": "private, no-store"})

    async def post_feedback(self, request: web.Request) -> web.Response:
        chat = self.store.chats.get(self._chat_for(request).id)
        assert chat is not None
        data = await self._json(request)
        rating = data.get("rating")
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise ApiError(400, "bad_request", "'rating' must be a whole number from 1 to 5.")
        comment = self._optional_text(data, "comment", 2000)
        if chat.state != "closed":
            raise ApiError(409, "chat_open", "Feedback can be given once the chat has ended.")
        if not self.store.feedback.add(chat.id, rating, comment):
            raise ApiError(409, "feedback_given", "Feedback for this chat was already received. Thank you.")
        return web.json_response({"rating": rating}, status=201)

    async def get_transcript(self, request: web.Request) -> web.Response:
        chat = self.store.chats.get(self._chat_for(request).id)
        assert chat is not None
        fmt = request.query.get("format", "txt")
        if fmt not in ("txt", "html"):
            raise ApiError(400, "bad_request", "'format' must be txt or html.")
        messages: list[Message] = []
        while batch := self.store.messages.since(chat.id, messages[-1].seq if messages else 0):
            messages += batch
        name = self.config.get("site.service_name") or transcript.DEFAULT_SERVICE_NAME
        filename = f"chat-{chat.number}.{fmt}"
        body = transcript.as_text(chat, name, messages) if fmt == "txt" else transcript.as_html(chat, name, messages)
        return web.Response(text=body, content_type="text/plain" if fmt == "txt" else "text/html", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                     "Cache-Control": "no-store"})

    def _admit_and_send(self, chat: Chat, client_id: str, body: str) -> Message:
        took = self._admit(chat, client_id)
        try:
            return self._send(chat, client_id, body)
        except Exception as e:
            if took and is_full(e):
                self.rates.give_back(chat.id)  # nothing was stored: its resend must not be refused for the rate
            raise

    def _admit(self, chat: Chat, client_id: str) -> bool:
        """The chat's message rate (WebSocket and POST together); over it nothing is stored. Whether the
        message took one of the chat's tokens."""
        if self.store.messages.by_client_id(chat.id, client_id):
            return False  # a resend after a lost ack is answered from the store: it costs nothing
        wait = self.rates.take(chat.id)
        if wait:
            metrics.visitor_refused("rate_limited")
            e = ApiError(429, "rate_limited", f"Too many messages at once; send this one again in {wait} s.")
            e.client_id, e.retry_after = client_id, wait
            raise e
        return True

    def _send(self, chat: Chat, client_id: str, body: str) -> Message:
        try:
            return self.chats.visitor_message(self.store.chats.refresh(chat), client_id, body)
        except ChatClosed:
            raise ApiError(409, "chat_closed", "This chat has ended; start a new chat to write again.")

    # ---- WebSocket ---------------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        # Browsers always send Origin on a WebSocket handshake; a page from a site that is not ours
        # (or an agency's, for the widget) must not open a citizen's chat.
        if origin is not None and origin not in self.allowed_origins:
            raise ApiError(403, "origin_not_allowed", "This site may not open the chat.")
        address = self.client_address(request)
        if not self.socket_counts.open(address):
            metrics.visitor_refused("too_many_connections")
            e = ApiError(429, "too_many_connections", "Too many open chat connections from this address; "
                         "close some and try again.")
            e.retry_after = 10
            raise e
        try:
            ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME_BYTES)
            await ws.prepare(request)
        except BaseException:
            self.socket_counts.closed(address)
            raise
        self._sockets.add(ws)
        try:
            return await self._serve(request, ws)
        except Exception:
            # A bug, not the client's doing. The connection is a WebSocket now: an HTTP 500 written
            # into it would be garbage to the page, so close it as the WebSocket protocol says.
            log.exception("unexpected error on the WebSocket of %s", request.path)
            if not ws.closed:
                await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
            return ws
        finally:
            self._sockets.discard(ws)
            self.socket_counts.closed(address)

    async def _close_sockets(self, app: web.Application) -> None:
        """At shutdown: tell every citizen's page to reconnect later (1001) instead of holding the stop."""
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server restarting")

    async def _serve(self, request: web.Request, ws: web.WebSocketResponse) -> web.WebSocketResponse:
        try:
            chat, since = await self._ws_auth(request, ws)
        except ApiError as e:
            await ws.send_json(e.frame())
            await ws.close(code=4000 + e.status, message=e.error.encode())
            return ws
        except asyncio.TimeoutError:
            await ws.send_json(ApiError(401, "unauthorized", "Send an auth frame first.").frame())
            await ws.close(code=4401)
            return ws
        except _ClientGone:
            return ws
        if not self.socket_counts.join(chat.id):
            metrics.visitor_refused("too_many_connections")
            await ws.send_json(ApiError(429, "too_many_connections", "This chat is open in too many places; "
                                        "close another tab or window and try again.").frame())
            await ws.close(code=4429, message=b"too_many_connections")
            return ws
        try:
            return await self._serve_chat(ws, chat, since)
        finally:
            self.socket_counts.left(chat.id)

    async def _serve_chat(self, ws: web.WebSocketResponse, chat: Chat, since: int) -> web.WebSocketResponse:
        sub = self.chats.hub.subscribe(chat.id)
        if 0 < since - self.store.messages.last_seq(chat.id) <= MAX_AHEAD:
            # The page has seen more than the store holds (restored from a backup): told, and numbered past it.
            self.chats.page_ahead(chat, since)
        # A client claiming more than exists would otherwise never see the messages up to its number.
        last = min(since, self.store.messages.last_seq(chat.id))
        try:
            state = self._state(self.store.chats.refresh(chat))
            await ws.send_json({"type": "ready", **state})
            last = await self._replay(ws, chat.id, last)
            reader = asyncio.create_task(self._read_frames(ws, chat))
            loop = asyncio.get_running_loop()
            # A state change (an officer joined, the chat closed) is told at once; a new queue place at most
            # once per STATUS_EVERY, so a burst of closes costs a waiting citizen one frame a second.
            status_sent, status_due = loop.time(), None
            getter: asyncio.Task | None = None
            while not reader.done():
                getter = getter or asyncio.create_task(sub.get())
                wait = None if status_due is None else max(0.0, status_due - loop.time())
                done, _ = await asyncio.wait({reader, getter}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    break
                if getter in done:
                    signal, getter = getter.result(), None
                    if signal["kind"] == "messages":
                        last = await self._replay(ws, chat.id, last)
                    elif signal["kind"] == "typing":
                        await ws.send_json({"type": "typing", "active": signal["active"]})
                    elif signal["kind"] == "read":
                        read_seq = self.store.chats.refresh(chat).read_seq
                        if read_seq:
                            await ws.send_json({"type": "read", "seq": read_seq})
                    elif signal["kind"] == "status":
                        status_due = loop.time()
                    elif signal["kind"] == "queue" and status_due is None:
                        status_due = max(loop.time(), status_sent + STATUS_EVERY)
                if status_due is not None and loop.time() >= status_due:
                    last = await self._replay(ws, chat.id, last)
                    await ws.send_json(self._status(self.store.chats.refresh(chat)))
                    status_sent, status_due = loop.time(), None
            if getter is not None:
                getter.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        except (ConnectionResetError, RuntimeError) as e:
            log.debug("websocket for chat %s ended: %s", chat.number, e)
        finally:
            sub.close()
            if not ws.closed:
                await ws.close()
        return ws

    async def _ws_auth(self, request: web.Request, ws: web.WebSocketResponse) -> tuple[Chat, int]:
        """Wait for the auth frame; one deadline from connection, however many wrong frames come first."""
        deadline = asyncio.get_running_loop().time() + AUTH_TIMEOUT
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise asyncio.TimeoutError()
            msg = await asyncio.wait_for(ws.receive(), timeout=remaining)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                raise _ClientGone()
            if msg.type != WSMsgType.TEXT:
                await ws.send_json(ApiError(400, "bad_frame", "Expected a JSON text frame {\"type\":\"auth\",…}.")
                                   .frame())
                continue
            try:
                frame = _parse_json(msg.data, "The frame")
            except ApiError as e:
                await ws.send_json(e.frame())
                continue
            if not isinstance(frame, dict) or frame.get("type") != "auth" or not isinstance(frame.get("token"), str):
                await ws.send_json(ApiError(400, "bad_frame", "The first frame must be "
                                            "{\"type\":\"auth\",\"token\":\"…\",\"since\":N}.").frame())
                continue
            chat = self._chat_for(request, frame["token"])
            try:
                return chat, self._since(frame.get("since"))
            except ApiError as e:
                await ws.send_json(e.frame())      # still unauthenticated: a corrected auth frame may follow

    def _frame(self, m: Message) -> dict[str, Any]:
        attachment = self.store.attachments.get(m.chat_id, m.seq) if m.kind in ("image", "file") else None
        return message_frame(m, attachment)

    async def _replay(self, ws: web.WebSocketResponse, chat_id: str, last: int) -> int:
        try:
            await self.store.db.durable()      # a frame of the citizen's own message is, to the page, delivered
        except StoreNotDurable:
            return last                        # nothing shown that is not on disk; the socket stays (frames say why)
        while batch := self.store.messages.since(chat_id, last):
            for m in batch:
                await ws.send_json(self._frame(m))
                last = m.seq
        return last

    async def _read_frames(self, ws: web.WebSocketResponse, chat: Chat) -> None:
        """Handle the citizen's frames one by one; their answers go back in the same order through
        ``_answer``, so reading the next frame never waits for the disk (acks of a burst share flushes)."""
        replies: Mailbox[tuple[dict[str, Any], int | None] | None] = Mailbox(REPLIES_PENDING)
        answering = asyncio.create_task(self._answer(ws, replies))
        try:
            async for msg in ws:
                # Frames already buffered are handed out without a pause: without this, a flood on one
                # socket would be served to its end before anyone else (another citizen, /health) gets a turn.
                await asyncio.sleep(0)
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await replies.put((ApiError(400, "bad_frame", "Binary frames are not supported.").frame(), None))
                    continue
                try:
                    reply = self._client_frame(chat, msg.data)
                except ApiError as e:
                    reply = e.frame(), None
                except Exception as e:
                    if self.store.db.note(e):
                        # The disk is full: nothing of this frame was stored (its transaction was rolled back).
                        full = store_full()
                        full.client_id = _client_id_of(msg.data)
                        reply = full.frame(), None
                    elif is_shortage(e):
                        # Out of descriptors or memory (nothing was stored): "busy", logged once a minute.
                        self.shortages.report("frame", "a citizen's frame answered busy", e)
                        busy = self.busy()
                        busy.client_id = _client_id_of(msg.data)
                        reply = busy.frame(), None
                    else:
                        # A bug, not the client's doing: logged, and the citizen's connection carries on.
                        log.exception("unexpected error on a frame of chat %s", chat.number)
                        reply = ApiError(500, "internal_error", "Something went wrong on our side; "
                                         "please try again.").frame(), None
                if reply is not None:
                    await replies.put(reply)           # waits while REPLIES_PENDING answers wait for the disk
        finally:
            await replies.put(None)                    # the answers so far still go out, then _answer ends
            await answering

    async def _answer(self, ws: web.WebSocketResponse,
                      replies: Mailbox[tuple[dict[str, Any], int | None] | None]) -> None:
        """Send the answers in order; an ack only once what it acknowledges is on disk (store/db.py).
        It always drains the queue (even after the socket went away), so the reader never waits on it for ever."""
        gone = False
        while (reply := await replies.get()) is not None:
            frame, mark = reply
            if mark is not None:
                try:
                    await self.store.db.durable(mark)
                except StoreNotDurable:
                    frame = {**store_unavailable().frame(), "client_id": frame.get("client_id")}  # logged by the store
            if gone:
                continue
            try:
                await ws.send_json(frame)
            except (ConnectionResetError, RuntimeError) as e:
                log.debug("answer not sent, the socket went away: %s", e)
                gone = True

    def _client_frame(self, chat: Chat, data: str) -> tuple[dict[str, Any], int | None] | None:
        """Act on one frame; its answer and, for an ack, the store's mark it must wait for."""
        frame = _parse_json(data, "The frame")
        if not isinstance(frame, dict):
            raise ApiError(400, "bad_frame", "A frame must be a JSON object with a 'type'.")
        kind = frame.get("type")
        if kind == "message":
            try:
                client_id, body = self._message_fields(frame)
                msg = self._admit_and_send(chat, client_id, body)
            except ApiError as e:
                if isinstance(frame.get("client_id"), str) and len(frame["client_id"]) <= MAX_CLIENT_ID:
                    e.client_id = frame["client_id"]
                raise
            return {"type": "ack", "client_id": client_id, "seq": msg.seq}, self.store.db.mark()
        if kind == "typing":
            if not isinstance(frame.get("active"), bool):
                raise ApiError(400, "bad_frame", "'active' must be true or false.")
            self.typing.set(chat, frame["active"])
            return None
        if kind == "close":
            self.chats.close(self.store.chats.refresh(chat), by="visitor")   # told by frames: _replay
            return None
        if kind == "read":
            seq = frame.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise ApiError(400, "bad_frame", "'seq' must be the number of a message you were shown.")
            self.reads.set(chat, seq)
            return None
        if kind == "auth":
            raise ApiError(400, "bad_frame", "Already authenticated.")
        raise ApiError(400, "bad_frame", "Unknown frame type; expected message, typing, read or close.")


def queue_frame(state: str, position: int | None, estimate: int | None) -> dict:
    """The visitor API's status frame; position is 1 for the next chat to be answered."""
    frame: dict = {"type": "status", "state": state}
    if state == "waiting":
        frame["position"] = position
        frame["estimate_seconds"] = estimate
    return frame
