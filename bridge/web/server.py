"""The public listener: citizen page, static files and the visitor API, behind strict headers.

Whatever goes wrong, a citizen gets ``{"error", "message"}`` and never a stack trace.  Every answer of the
visitor API and the console waits for the store's durability barrier (``durable``, store/db.py): what a
citizen or a supervisor is told was stored is on disk.
"""
from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from ..resources import OpenFiles, Shortages, is_shortage
from ..store.db import StoreNotDurable
from . import branding
from .visitor_api import ApiError, VisitorApi, store_full, store_unavailable

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

def content_security_policy(embed_origins: list[str]) -> str:
    """Strict CSP; only the agencies' own sites may frame the page (the widget's iframe)."""
    ancestors = " ".join(["'self'", *embed_origins])
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {ancestors}")


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def errors(visitor_api: VisitorApi, shortages: Shortages | None = None):  # type: ignore[no-untyped-def]
    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        try:
            return await handler(request)
        except ApiError as e:
            return e.response()
        except StoreNotDurable:
            return store_unavailable().response()
        except web.HTTPRequestEntityTooLarge:
            return ApiError(413, "too_large", "The request is too large.").response()
        except web.HTTPException as e:
            if e.status >= 400:
                code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
                return ApiError(e.status, code, e.reason or "Request failed.").response()
            raise
        except Exception as e:
            if visitor_api.store is not None and visitor_api.store.db.note(e):
                return store_full().response()      # nothing half done: the write was rolled back whole
            if is_shortage(e):
                # Out of descriptors or memory: not a bug, and nothing half done (each change is one commit).
                if shortages is not None:
                    shortages.report("request", f"{request.method} {request.path} answered 503 busy", e)
                return visitor_api.busy().response()
            log.exception("unexpected error on %s %s", request.method, request.path)
            return ApiError(500, "internal_error", "Something went wrong on our side. Your chat is safe; "
                                                   "please try again.").response()
    return middleware


def security_headers(embed_origins: list[str]):  # type: ignore[no-untyped-def]
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(embed_origins)}

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        response = await handler(request)
        if not response.prepared:
            for name, value in headers.items():
                response.headers.setdefault(name, value)   # the console sets a stricter CSP of its own
        return response
    return middleware


ANSWERS_ABOUT_THE_STORE = ("/api/", "/console")      # not /health, the page, static files or the logo


def after_durable(durable: Callable[[], Awaitable[None]]):  # type: ignore[no-untyped-def]
    """Hold every visitor API and console answer (success, refusal or redirect) until what was committed
    before it is on disk. Reads wait too: a message read back is, to the page, a message delivered."""
    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if not request.path.startswith(ANSWERS_ABOUT_THE_STORE):
            return await handler(request)
        try:
            response = await handler(request)
        except Exception:
            await durable()                  # refusals ("already received" too) and the console's redirects
            raise
        if not response.prepared:            # a WebSocket has long been answered; its frames wait themselves
            await durable()
        return response
    return middleware


def public_app(visitor_api: VisitorApi, console: web.Application | None = None, *,
               durable: Callable[[], Awaitable[None]], shortages: Shortages | None = None,
               readiness: Callable[[], str | None] | None = None) -> web.Application:
    """``readiness``: None when the bridge is ready, else the status /health answers 503 with ("starting",
    "homeserver_unreachable"): citizens are still served then, and what they write is delivered later."""
    # Large enough for an attachment; JSON endpoints enforce their own, smaller limit.
    app = web.Application(middlewares=[security_headers(visitor_api.embed_origins), errors(visitor_api, shortages),
                                       after_durable(durable)],
                          client_max_size=visitor_api.max_attachment + 64 * 1024)
    visitor_api.routes(app)

    async def health(request: web.Request) -> web.Response:
        # Answered at once (it waits for no disk); 503 once the store can no longer promise what it stores.
        if visitor_api.store is not None and visitor_api.store.db.failure is not None:
            return web.json_response({"status": "store_failed"}, status=503)
        if visitor_api.store is not None and visitor_api.store.db.full():
            return web.json_response({"status": "store_full"}, status=503)    # ok again once there is space
        not_ready = readiness() if readiness is not None else None
        if not_ready is not None:
            return web.json_response({"status": not_ready}, status=503)
        return web.json_response({"status": "ok"})

    app.router.add_get("/health", health)
    if console is not None:
        async def to_console(request: web.Request) -> web.Response:
            raise web.HTTPPermanentRedirect("/console/")
        app.router.add_get("/console", to_console)
        app.add_subapp("/console", console)
    branding.routes(app, visitor_api.config)
    if (STATIC / "chat.html").exists():
        async def chat_page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC / "chat.html")
        app.router.add_get("/chat", chat_page)
        app.router.add_static("/static/", STATIC)
    return app


class _Refused(asyncio.Protocol):
    """A connection accepted while descriptors are almost gone: answered 503 busy at once and closed, so it
    holds its descriptor for a moment rather than for a whole request (or a WebSocket's life).

    The answer goes before the request is read (a client that sends none must not keep the descriptor);
    the write side is shut and what the client sends is read and dropped for at most ``LINGER`` seconds, so
    the close does not reset the connection before the client has read the answer."""

    LINGER = 2.0

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.answer)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(self.LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False                              # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


def busy_answer(error: ApiError) -> bytes:
    """A complete HTTP/1.1 response for a refused connection: the same JSON the visitor API gives."""
    body = json.dumps({"error": error.error, "message": error.message, **error.extra,
                       **({"retry_after": error.retry_after} if error.retry_after is not None else {})}).encode()
    head = ["HTTP/1.1 503 Service Unavailable", "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close", "Cache-Control: no-store",
            *([f"Retry-After: {error.retry_after}"] if error.retry_after is not None else []),
            *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedSite(web.BaseSite):
    """The public listener: like ``web.TCPSite``, but while fewer than half the descriptor reserve is free
    (``OpenFiles.short_for_connections``) each new connection is answered 503 busy and closed, so the
    chats already open keep the descriptors they need and ``accept()`` itself never runs dry."""

    __slots__ = ("_host", "_port", "_open_files", "_shortages", "_answer")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, open_files: OpenFiles, shortages: Shortages,
                 answer: bytes) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self._open_files, self._shortages, self._answer = open_files, shortages, answer

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _protocol(self) -> asyncio.BaseProtocol:
        self._open_files.opened()
        if self._open_files.short_for_connections():
            self._shortages.report("connections", "new connections to the public listener answered 503 busy "
                                   "and closed; open chats go on")
            return _Refused(self._answer)
        server = self._runner.server
        assert server is not None
        return server()

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(self._protocol, self._host, self._port,
                                                                      backlog=self._backlog, reuse_address=True)
