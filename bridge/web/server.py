"""The public listener: citizen page, static files and the visitor API, behind strict headers.

Whatever goes wrong, a citizen gets ``{"error", "message"}`` and never a stack trace.  Every answer of the
visitor API and the console waits for the store's durability barrier (``durable``, store/db.py): what a
citizen or a supervisor is told was stored is on disk.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from ..store.db import StoreNotDurable
from . import branding
from .visitor_api import ApiError, VisitorApi, store_unavailable

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


@web.middleware
async def errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
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
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return ApiError(500, "internal_error", "Something went wrong on our side. Your chat is safe; "
                                               "please try again.").response()


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
               durable: Callable[[], Awaitable[None]]) -> web.Application:
    # Large enough for an attachment; JSON endpoints enforce their own, smaller limit.
    app = web.Application(middlewares=[security_headers(visitor_api.embed_origins), errors, after_durable(durable)],
                          client_max_size=visitor_api.max_attachment + 64 * 1024)
    visitor_api.routes(app)

    async def health(request: web.Request) -> web.Response:
        # Answered at once (it waits for no disk); 503 once the store can no longer promise what it stores.
        if visitor_api.store is not None and visitor_api.store.db.failure is not None:
            return web.json_response({"status": "store_failed"}, status=503)
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
