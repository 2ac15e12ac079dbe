"""The console's routes under /console on the public listener: sign-in, live view, search, transcripts.

Its own CSP forbids every script and every origin but ours; responses are never cached.  The
session cookie is HttpOnly, SameSite=Strict and Secure when the public URL is https.  A supervisor
sees only the agencies they supervise; trying another's chat is refused on record.

Cross-site forms (CSRF) are refused by three checks a real browser satisfies on our own pages:

* every form carries a token: derived from the session, or, on the sign-in form (before a session
  exists), from a random SameSite=Strict cookie set when the sign-in page is shown, so another
  site cannot sign a supervisor into a session of its choosing;
* ``Sec-Fetch-Site`` must be ``same-origin`` when the browser sends it (Chromium, Firefox, Safari
  on https and on localhost);
* without it, ``Origin``, if present, must be ours.  Console pages send ``Referrer-Policy:
  same-origin`` so that the browser puts our origin there rather than ``null`` (``no-referrer``,
  which the citizen page keeps, makes a form's POST say ``Origin: null``).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol, Sequence
from urllib.parse import urlsplit

from aiohttp import web

from .. import client_input
from ..client_address import ClientAddresses
from ..config import Config
from ..records import Records
from ..records.retention import Retention
from ..store import Store
from ..store.chats import CLOSED, Chat
from . import pages
from .auth import ConsoleAuth, SignInLimited, Supervisor
from .pages import Page

log = logging.getLogger(__name__)

COOKIE = "precinct_console"
SIGN_IN_COOKIE = "precinct_console_sign_in"    # the sign-in form's CSRF secret, before a session exists
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
MAX_FORM_BYTES = 16 * 1024          # a sign-in token, a CSRF token and a hold reason of 500 characters
EXPORT_TYPES = {"json": "application/json", "html": "text/html", "txt": "text/plain"}

Handler = Callable[[web.Request, Supervisor, str], Awaitable[web.StreamResponse]]
# Invite a supervisor to an open chat's room to review it (routing's watch); returns what to tell them.
Watch = Callable[[Chat, str, str | None], Awaitable[str]]
Guard = Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]
# A POST's fields once the CSRF checks passed (request, session ID); raises the console's refusals.
FormReader = Callable[[web.Request, str], Awaitable[dict[str, str]]]


class ConsoleSection(Protocol):
    """A part of the console kept in its own module (reports, practice): it adds its routes, each behind the
    console's sign-in guard, when the console's app is built; its forms are read through the console's checks."""

    def routes(self, app: web.Application, guarded: Guard, read_form: FormReader) -> None: ...


def html_response(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"precinct-console-csrf", hashlib.sha256).hexdigest()


def day_ms(text: str | None, end: bool = False) -> int | None:
    """``YYYY-MM-DD`` (UTC) → ms at the start of that day (or of the next one, for an end date)."""
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):     # strptime's %Y takes any Unicode digits
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(day.timestamp() * 1000) + (86_400_000 if end else 0)


class ConsoleWeb:
    def __init__(self, config: Config, store: Store, auth: ConsoleAuth, records: Records, retention: Retention,
                 bot: str, addresses: ClientAddresses | None = None, sections: Sequence[ConsoleSection] = (),
                 watch: Watch | None = None) -> None:
        self.config, self.store, self.auth, self.records, self.bot = config, store, auth, records, bot
        self.watch = watch
        self.retention = retention
        self.client_address = addresses or ClientAddresses(config.get("web.trusted_proxies"))
        public = urlsplit(config.get("web.public_url"))
        self.origin = f"{public.scheme}://{public.netloc}"
        self.secure = public.scheme == "https"
        self.sections = tuple(sections)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers_and_errors])
        r = app.router
        guarded = self.guarded
        r.add_get("/", guarded(self.live))
        r.add_get("/console.css", self.css)
        r.add_get("/sign-in", self.sign_in_page)
        r.add_post("/sign-in", self.sign_in)
        r.add_post("/sign-out", self.sign_out)
        r.add_get("/search", guarded(self.search))
        r.add_get("/chats/{chat_id}", guarded(self.chat))
        r.add_get("/chats/{chat_id}/export", guarded(self.export))
        r.add_get("/chats/{chat_id}/training-case", guarded(self.training_case))
        r.add_post("/chats/{chat_id}/hold", guarded(self.set_hold))
        if self.watch is not None:
            r.add_post("/chats/{chat_id}/watch", guarded(self.watch_chat))
        r.add_get("/feedback", guarded(self.feedback))
        r.add_get("/key", guarded(self.key))
        for section in self.sections:
            section.routes(app, self.guarded, self._form)
        return app

    # ---- plumbing ----------------------------------------------------------------------------------
    @web.middleware
    async def _headers_and_errors(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        try:
            response = await handler(request)
        except web.HTTPException as ex:
            if ex.status < 400:
                raise
            response = html_response(pages.problem(Page(None), ex.reason or "Error", ex.text or ex.reason or ""),
                                  ex.status)
        except Exception:
            log.exception("console error on %s %s", request.method, request.path)
            response = html_response(pages.problem(Page(None), "Something went wrong",
                                                "The console could not show this page. Nothing was changed."), 500)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"     # so a form's POST says Origin: <ours>, not null
        return response

    def _signed_out(self, request: web.Request, message: str = "", status: int = 401) -> web.Response:
        response = html_response(pages.signed_out(self.bot, message), status)
        if request.cookies.get(COOKIE):
            response.del_cookie(COOKIE, path="/console")
        return response

    def _who(self, request: web.Request) -> tuple[Supervisor, str] | None:
        session_id = request.cookies.get(COOKIE)
        who = self.auth.session(session_id)
        return (who, session_id) if who and session_id else None

    def _page(self, who: Supervisor, session_id: str) -> Page:
        return Page(who, csrf_token(session_id))

    def _same_origin(self, request: web.Request) -> bool:
        """Did the browser send this from one of our own pages?  (Sec-Fetch-Site, else Origin.)"""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None:
            return site == "same-origin"
        origin = request.headers.get("Origin")
        return origin is None or origin == self.origin

    async def _form(self, request: web.Request, csrf_secret: str | None,
                    expired: str = "This form has expired; reload the page and try again.") -> dict[str, str]:
        """A POST's fields, after checking it comes from our own pages: same origin, and the form's token
        matches ``csrf_secret`` (the session ID, or the sign-in cookie)."""
        if not self._same_origin(request):
            log.info("console: refused a %s %s sent from another site (Sec-Fetch-Site %s, Origin %s)",
                     request.method, request.path, request.headers.get("Sec-Fetch-Site"),
                     request.headers.get("Origin"))
            raise web.HTTPForbidden(reason="Refused", text="This form was not sent from the console.")
        if request.content_type != "application/x-www-form-urlencoded":
            raise web.HTTPUnsupportedMediaType(reason="Not a form", text="The console takes only its own forms.")
        try:
            form = client_input.parse_form(await client_input.read_body(request, MAX_FORM_BYTES))
        except client_input.BodyTooLarge:
            raise web.HTTPRequestEntityTooLarge(MAX_FORM_BYTES, request.content_length or MAX_FORM_BYTES + 1,
                                                reason="Too large", text="This form is larger than the console's forms.")
        except client_input.BadForm:
            raise web.HTTPBadRequest(reason="Bad form", text="This form could not be read.")
        if not csrf_secret or not hmac.compare_digest(form.get("csrf", ""), csrf_token(csrf_secret)):
            raise web.HTTPForbidden(reason="Refused", text=expired)
        return form

    def _agency_names(self, who: Supervisor) -> dict[str, str]:
        return {a.id: a.name for a in self.config.agencies if a.id in who.agencies}

    def _chat_for(self, who: Supervisor, chat_id: str, action: str, origin: str) -> Chat:
        chat = self.store.chats.get(chat_id)
        if chat is None or chat.agency not in who.agencies:
            if chat is not None:
                self.records.audit(action, who.user_id, "refused", target=chat_id, origin=origin,
                                   reason="not a supervisor of the chat's agency")
            raise web.HTTPNotFound(reason="Not found", text="There is no such chat in your agencies.")
        return chat

    def guarded(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a handler that needs a signed-in supervisor (the console's sections get it too)."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            found = self._who(request)
            if found is None:
                return self._signed_out(request, self._ended_note(request))
            return await handler(request, *found)
        return wrapped

    @staticmethod
    def _ended_note(request: web.Request) -> str:
        return "Your session has ended (30 minutes without activity, or signed out). Please sign in again." \
            if request.cookies.get(COOKIE) else ""

    # ---- routes ------------------------------------------------------------------------------------
    async def css(self, request: web.Request) -> web.Response:
        return web.Response(text=pages.CSS, content_type="text/css")

    async def sign_in_page(self, request: web.Request) -> web.Response:
        token = request.query.get("token", "")
        if not token:
            return self._signed_out(request, status=200)
        secret = secrets.token_urlsafe(32)
        response = html_response(pages.confirm_sign_in(token, csrf_token(secret)))
        response.set_cookie(SIGN_IN_COOKIE, secret, httponly=True, secure=self.secure, samesite="Strict",
                            path="/console/sign-in", max_age=self.auth.link_ttl_ms // 1000 + 60)
        return response

    async def sign_in(self, request: web.Request) -> web.Response:
        # Without the cookie (this browser was not shown our sign-in page, or long ago) the form is refused
        # and the link is not spent, so opening it again works.
        form = await self._form(request, request.cookies.get(SIGN_IN_COOKIE),
                                expired="This sign-in form did not come from the console's sign-in page in this "
                                        "browser. Open your sign-in link again.")
        try:
            signed = self.auth.sign_in(form.get("token", ""), self.client_address(request))
        except SignInLimited as limited:
            minutes = -(-limited.retry_after // 60)
            response = html_response(pages.problem(Page(None), "Too many sign-in attempts", (
                "There have been too many sign-in attempts from your connection, or to the console as a whole, "
                f"just now. Your sign-in link was not used: open it again in {minutes} minute"
                f"{'s' if minutes != 1 else ''} (if it has expired by then, send !console to the bot for a new "
                "one).")), 429)
            response.headers["Retry-After"] = str(limited.retry_after)
            return response
        if signed is None:
            return self._signed_out(request, "This sign-in link has expired or was already used. Send !console "
                                             "to the bot again for a new one.", status=403)
        session_id, _ = signed
        response = web.HTTPSeeOther("/console/")
        response.del_cookie(SIGN_IN_COOKIE, path="/console/sign-in")
        response.set_cookie(COOKIE, session_id, httponly=True, secure=self.secure, samesite="Strict",
                            path="/console")
        raise response

    async def sign_out(self, request: web.Request) -> web.Response:
        found = self._who(request)
        if found is not None:
            await self._form(request, found[1])
            self.auth.sign_out(found[1], found[0], self.client_address(request))
        return self._signed_out(request, "You have signed out.", status=200)

    async def live(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        now = int(time.time() * 1000)
        chats = self.store.chats.open_in(list(who.agencies))
        return html_response(pages.live(self._page(who, sid), self._agency_names(who), chats, now))

    async def search(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        form = {k: request.query.get(k, "").strip() for k in
                ("q", "agency", "topic", "officer", "from", "to", "tag", "rating")}
        agencies = self._agency_names(who)
        topics = {t.id: t.label for t in self.config.topics if t.agency in who.agencies}
        hits, error = None, ""
        if form["q"]:
            try:
                filters = self._filters(form, agencies, topics)
            except ValueError as ex:
                error = str(ex)
            else:
                hits = [h for h in self.records.search(form["q"], actor=who.user_id, origin=self.client_address(request),
                                                       **filters) if h.agency in who.agencies]
        return html_response(pages.search(self._page(who, sid), form, agencies, topics, hits, error))

    @staticmethod
    def _filters(form: dict[str, str], agencies: dict[str, str], topics: dict[str, str]) -> dict[str, Any]:
        if form["agency"] and form["agency"] not in agencies:
            raise ValueError("Choose one of your agencies.")
        if form["topic"] and form["topic"] not in topics:
            raise ValueError("Choose one of your agencies' topics.")
        if form["rating"] and form["rating"] not in {"1", "2", "3", "4", "5"}:
            raise ValueError("A rating is a number from 1 to 5.")
        try:
            since, until = day_ms(form["from"]), day_ms(form["to"], end=True)
        except ValueError:
            raise ValueError("Dates are written YYYY-MM-DD.") from None
        return {"agency": form["agency"] or (next(iter(agencies)) if len(agencies) == 1 else None),
                "topic": form["topic"] or None, "officer": form["officer"] or None, "since_ms": since,
                "until_ms": until, "tag": form["tag"] or None, "rating": int(form["rating"]) if form["rating"] else None}

    async def chat(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        chat = self._chat_for(who, request.match_info["chat_id"], "transcript.viewed", self.client_address(request))
        doc = self.records.view(chat.id, actor=who.user_id, origin=self.client_address(request))
        return html_response(pages.transcript(self._page(who, sid), doc, self.store.feedback.get(chat.id),
                                           can_hold=True, can_watch=self.watch is not None and chat.state != CLOSED
                                           and bool(chat.room_id)))

    async def export(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        fmt = request.query.get("format", "")
        if fmt not in EXPORT_TYPES:
            raise web.HTTPBadRequest(reason="Unknown format", text="Export as json, html or txt.")
        chat = self._chat_for(who, request.match_info["chat_id"], "transcript.exported", self.client_address(request))
        text = self.records.export(chat.id, fmt, actor=who.user_id, origin=self.client_address(request),
                                   service_name=self.config.get("site.service_name"))
        return web.Response(text=text, content_type=EXPORT_TYPES[fmt], charset="utf-8", headers={
            "Content-Disposition": f"attachment; filename=\"chat-{chat.number}.{fmt}\""})

    async def training_case(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        """A finished chat, anonymised for training (records/training_case.py); an open one is refused."""
        chat = self._chat_for(who, request.match_info["chat_id"], "transcript.training_case",
                              self.client_address(request))
        if chat.state != CLOSED:
            return html_response(pages.problem(self._page(who, sid), "Not finished yet", (
                f"Chat {chat.number} is still open. A training case is made from a finished chat.")), status=409)
        text = self.records.training_case(chat.id, actor=who.user_id, origin=self.client_address(request))
        return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={
            "Content-Disposition": f"attachment; filename=\"training-case-{chat.number}.txt\""})

    async def set_hold(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        form = await self._form(request, sid)
        if form.get("action") not in ("set", "lift"):
            raise web.HTTPBadRequest(reason="Bad request", text="A legal hold is set or lifted.")
        action = "legal_hold.set" if form["action"] == "set" else "legal_hold.lifted"
        chat = self._chat_for(who, request.match_info["chat_id"], action, self.client_address(request))
        if form["action"] == "set":
            self.retention.hold(chat, form.get("reason", "").strip()[:500] or None, who.user_id, self.client_address(request))
        else:
            self.retention.lift(chat, who.user_id, self.client_address(request))
        raise web.HTTPSeeOther(f"/console/chats/{chat.id}")

    async def watch_chat(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        """Monitoring from the console: the supervisor is invited to the open chat's room (as by !watch N)."""
        await self._form(request, sid)
        origin = self.client_address(request)
        chat = self._chat_for(who, request.match_info["chat_id"], "chat.watch", origin)
        assert self.watch is not None
        told = await self.watch(chat, who.user_id, origin)
        return html_response(pages.told(self._page(who, sid), f"Chat {chat.number}", told,
                                        f"/console/chats/{chat.id}"))

    async def feedback(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        return html_response(pages.feedback_list(self._page(who, sid), self.store.feedback.recent(list(who.agencies))))

    async def key(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        return html_response(pages.signing_key(self._page(who, sid), self.records.signer.public_key))
