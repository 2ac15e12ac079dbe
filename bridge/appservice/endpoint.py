"""The appservice API the homeserver calls (``/_matrix/app/v1/*``).

It authenticates, parses, writes the transaction to the store and answers; it
never handles an event itself.  A transaction is acknowledged only once it is
committed to SQLite and the store's durability barrier has passed (``durable``, store/db.py), so
neither a crash nor a power cut after the 200 loses it; a repeated txnId is answered 200 (after the
same barrier: the first copy may still be on its way to disk) and ignored.  Processing happens after the answer, in
``chats.inbound``, woken by ``on_stored``.
"""
from __future__ import annotations

import hmac
import logging
from typing import Awaitable, Callable

from aiohttp import web

from .. import client_input
from ..store.transactions import Transactions

log = logging.getLogger(__name__)

# Synapse sends at most 100 events a transaction, each at most 64 KiB, plus ephemeral events, to-device
# messages and device lists: generous, but a bound.
MAX_TRANSACTION_BYTES = 64 * 1024 * 1024


def matrix_error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


class AppserviceEndpoint:
    def __init__(self, hs_token: str, transactions: Transactions, on_stored: Callable[[], None],
                 user_exists: Callable[[str], bool], durable: Callable[[], Awaitable[None]]) -> None:
        self._hs_token = hs_token.encode()
        self.transactions, self.durable = transactions, durable
        self.on_stored = on_stored
        self.user_exists = user_exists
        self.pings = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate], client_max_size=MAX_TRANSACTION_BYTES)
        app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", self.transaction)
        app.router.add_get("/_matrix/app/v1/users/{user_id}", self.user_query)
        app.router.add_get("/_matrix/app/v1/rooms/{alias}", self.room_query)
        app.router.add_post("/_matrix/app/v1/ping", self.ping)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        header = request.headers.get("Authorization", "")
        token = header[7:].encode() if header.startswith("Bearer ") else b""
        if not token or not hmac.compare_digest(token, self._hs_token):
            return matrix_error(403, "M_FORBIDDEN", "Missing or wrong homeserver token")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request")
        except web.HTTPMethodNotAllowed:
            return matrix_error(405, "M_UNRECOGNIZED", "Method not allowed")
        except web.HTTPException as e:
            return matrix_error(e.status, "M_UNKNOWN", e.reason or "Request failed")
        except Exception as e:
            if self.transactions.db.note(e):
                # Not stored (rolled back whole): the homeserver keeps the transaction and sends it again.
                return matrix_error(503, "M_UNKNOWN", "The bridge's disk is full; send this again later")
            log.exception("unexpected error on %s %s", request.method, request.path)
            return matrix_error(500, "M_UNKNOWN", "Internal error")

    async def transaction(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["txn_id"]
        try:
            # Only what the homeserver itself could parse reaches us, so no depth limit of our own here.
            raw = await client_input.read_body(request, MAX_TRANSACTION_BYTES)
            body = client_input.parse_json(raw, max_depth=None)
        except client_input.BodyTooLarge as e:
            return matrix_error(413, "M_TOO_LARGE", f"Transaction body is larger than {e.limit} bytes")
        except client_input.NotJson:
            return matrix_error(400, "M_NOT_JSON", "Transaction body is not JSON")
        except client_input.BadJson as e:
            return matrix_error(400, "M_BAD_JSON", f"Transaction body is not accepted: {e}")
        if not isinstance(body, dict) or not isinstance(body.get("events", []), list):
            return matrix_error(400, "M_BAD_JSON", "Transaction must be an object with an 'events' list")
        if self.transactions.store(txn_id, body, _as_text(raw)):
            self.on_stored()
        else:
            log.debug("transaction %s already received", txn_id)
        await self.durable()            # StoreNotDurable: a 500, and the homeserver sends it again later
        return web.json_response({})

    async def user_query(self, request: web.Request) -> web.Response:
        if self.user_exists(request.match_info["user_id"]):
            return web.json_response({})
        return matrix_error(404, "M_NOT_FOUND", "No such user")

    async def room_query(self, request: web.Request) -> web.Response:
        return matrix_error(404, "M_NOT_FOUND", "Precinct does not provide room aliases")

    async def ping(self, request: web.Request) -> web.Response:
        self.pings += 1
        return web.json_response({})


def _as_text(raw: bytes) -> str | None:
    """The transaction as it came, to store as it is (the homeserver sends UTF-8 JSON); None when it is in
    another encoding JSON allows (UTF-16 or -32: NUL bytes), and the parsed body is written out instead."""
    if b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8-sig")          # a byte-order mark (JSON allows one) is not kept
    except UnicodeDecodeError:
        return None
