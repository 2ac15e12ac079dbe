"""Talking to the homeserver as the appservice, or as one puppet on its own device.

``HomeserverApi`` covers the few appservice calls nio has no method for
(register, device creation, ping, typing, cross-signing upload).  ``PuppetClient``
is a nio ``AsyncClient`` that adds ``user_id``/``device_id`` to every request
(appservice identity assertion and MSC3202 device masquerading), so all of nio's
endpoints act as that puppet's device with the single as_token.

Both wait for the store's durability barrier (``durable``, store/db.py) before every request: what the
homeserver is asked to do rests on rows (transaction IDs, puppets, rooms) that must be on disk first.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlencode, urlparse, urlunparse, parse_qsl

import aiohttp
import nio
from nio.api import Api as NioApi

from . import cs_api

log = logging.getLogger(__name__)


class MatrixError(Exception):
    def __init__(self, status: int, body: dict[str, Any], what: str) -> None:
        self.status, self.body = status, body
        self.errcode = body.get("errcode", "") if isinstance(body, dict) else ""
        super().__init__(f"{what}: HTTP {status} {self.errcode} {body.get('error', '') if isinstance(body, dict) else body}")


class MediaTooLarge(MatrixError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, {"errcode": "M_TOO_LARGE", "error": f"more than {limit} bytes"}, "media download")
        self.limit = limit


async def read_to_end(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Every byte of a response body, whatever its transfer encoding, or ``MediaTooLarge`` as soon as
    more than ``limit`` have arrived (``StreamReader.read(n)`` returns what is buffered, not n bytes)."""
    data = bytearray()
    while chunk := await stream.readany():
        data += chunk
        if len(data) > limit:
            raise MediaTooLarge(limit)
    return bytes(data)


# Each request may take 30 s to connect and 30 s between reads, but waiting for one of the pool's
# connections is not limited: a burst of chats queues its requests rather than failing them after 30 s.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30)
PING_AGAIN_AFTER = (0.5, 1.0, 2.0, 4.0)     # seconds between start-up pings that failed (ping)
CLASH_SKIP = 50                             # one-time key IDs skipped when the homeserver holds ours (keys_upload)
CLASH_TRIES = 20                            # … at most this many times (1,000 IDs: a restored device, see keys_upload)
NIO_ONE_TIME_KEYS = 50                      # nio's own: published again after every key an officer's device takes
OLM_ALGORITHM, MEGOLM_ALGORITHM = "m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"


class HomeserverApi:
    """Raw appservice requests with the as_token (one shared aiohttp session)."""

    def __init__(self, base_url: str, as_token: str, appservice_id: str, verify_tls: bool = True, *,
                 durable: Callable[[], Awaitable[None]], max_connections: int = 64) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_connections = max_connections
        self.durable = durable
        self.as_token = as_token
        self.appservice_id = appservice_id
        self.ssl = None if verify_tls else False
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # One pool for the bot and every puppet (PuppetClient): a bounded number of sockets to the homeserver,
        # whatever the number of chats (nio would otherwise open a session, and a socket, per puppet).
        self.session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT,
                                             connector=aiohttp.TCPConnector(limit=self.max_connections))

    async def close(self) -> None:
        if self.session:
            await self.session.close()

    async def request(self, method: str, path: str, body: Any = None, *, user_id: str | None = None,
                      device_id: str | None = None, query: dict[str, str] | None = None,
                      ok: tuple[int, ...] = (200,), what: str = "") -> dict[str, Any]:
        assert self.session, "HomeserverApi.start() not called"
        await self.durable()
        params = dict(query or {})
        if user_id:
            params["user_id"] = user_id
        if device_id:
            params["device_id"] = device_id
        async with self.session.request(
                method, self.base_url + path, params=params or None, ssl=self.ssl,
                json=body, headers={"Authorization": f"Bearer {self.as_token}"}) as resp:
            try:
                data = await resp.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                data = {"error": (await resp.text())[:200]}
            if resp.status not in ok:
                raise MatrixError(resp.status, data or {}, what or f"{method} {path}")
            return data or {}

    async def send(self, req: cs_api.Request, *, user_id: str | None = None, device_id: str | None = None,
                   ok: tuple[int, ...] = (200,), what: str = "") -> dict[str, Any]:
        """One request built by ``cs_api``, as the appservice or as ``user_id`` (on ``device_id``)."""
        return await self.request(req.method, req.path, req.body, user_id=user_id, device_id=device_id,
                                  query=req.query or None, ok=ok, what=what)

    async def register(self, localpart: str) -> None:
        """Create an appservice user; an existing one is fine (M_USER_IN_USE)."""
        try:
            await self.send(cs_api.register(localpart), what="register puppet")
        except MatrixError as e:
            if e.errcode != "M_USER_IN_USE":
                raise

    async def create_device(self, user_id: str, device_id: str, display_name: str) -> None:
        """MSC4190: an appservice creates its user's device directly (idempotent)."""
        await self.send(cs_api.create_device(device_id, display_name), user_id=user_id, ok=(200, 201),
                        what="create device")

    async def set_display_name(self, user_id: str, name: str) -> None:
        await self.send(cs_api.display_name(user_id, name), user_id=user_id, what="set display name")

    async def redact(self, user_id: str, room_id: str, event_id: str, txn_id: str, reason: str) -> str:
        """Redact an event as this user; the same txn_id repeated is the same redaction."""
        data = await self.send(cs_api.redact(room_id, event_id, txn_id, reason), user_id=user_id, what="redact")
        return str(data.get("event_id", ""))

    async def ping(self, again_after: tuple[float, ...] = PING_AGAIN_AFTER) -> dict[str, Any]:
        """Ask the homeserver to call our /ping; once that call succeeds it retries queued transactions at once.

        A failed ping leaves the homeserver's back-off as it was (Synapse's: up to minutes after an outage),
        and Synapse's own call to us can fail for a moment after our restart (seen: 502 M_CONNECTION_FAILED,
        "AlreadyCalled"), so a failed ping is tried again after each of ``again_after`` seconds."""
        for wait in (*again_after, None):
            try:
                return await self.send(cs_api.appservice_ping(self.appservice_id, "precinct-startup"),
                                       what="appservice ping")
            except (MatrixError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                if wait is None:
                    raise
                log.info("appservice ping failed, again in %s s: %s", wait, e)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def room_messages(self, user_id: str, room_id: str, limit: int,
                            from_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the room's timeline as ``user_id``, newest first, and the token of the page before it."""
        data = await self.send(cs_api.room_messages(room_id, limit, from_token), user_id=user_id, what="room messages")
        chunk = [e for e in data.get("chunk", []) if isinstance(e, dict)]
        return chunk, (data.get("end") if chunk else None)

    async def joined_rooms(self, user_id: str) -> list[str]:
        data = await self.send(cs_api.joined_rooms(), user_id=user_id, what="joined rooms")
        return list(data.get("joined_rooms", []))

    async def room_state(self, user_id: str, room_id: str) -> list[dict[str, Any]]:
        await self.durable()
        async with self._raw("GET", cs_api.room_state(room_id).path, user_id) as resp:
            if resp.status != 200:
                raise MatrixError(resp.status, await resp.json(content_type=None), "room state")
            return await resp.json()

    async def typing(self, user_id: str, room_id: str, active: bool, timeout_ms: int = 20000) -> None:
        await self.send(cs_api.typing(room_id, user_id, active, timeout_ms), user_id=user_id, what="typing")

    async def presence(self, as_user: str, user_id: str) -> dict[str, Any]:
        """A user's presence as the homeserver knows it: {"presence", "last_active_ago" (ms), …}."""
        return await self.send(cs_api.presence(user_id), user_id=as_user, what="presence")

    async def read_receipt(self, user_id: str, room_id: str, event_id: str) -> None:
        await self.send(cs_api.read_receipt(room_id, event_id), user_id=user_id, what="read receipt")

    async def upload_cross_signing(self, user_id: str, body: dict[str, Any]) -> None:
        await self.send(cs_api.upload_cross_signing(body), user_id=user_id, what="cross-signing upload")

    async def upload_signatures(self, user_id: str, body: dict[str, Any]) -> None:
        data = await self.send(cs_api.upload_signatures(body), user_id=user_id, what="signature upload")
        if data.get("failures"):
            raise MatrixError(200, {"error": json.dumps(data["failures"])[:500]}, "signature upload refused")

    async def query_device_keys(self, user_id: str, device_id: str) -> dict[str, Any]:
        data = await self.send(cs_api.query_device_keys(user_id, device_id), user_id=user_id, what="keys query")
        return data.get("device_keys", {}).get(user_id, {}).get(device_id, {})

    async def to_device_backlog(self, user_id: str, device_id: str, since: str | None) -> dict[str, Any]:
        """Pending to-device messages for one puppet device after ``since`` (see crypto.catch_up)."""
        only_to_device = json.dumps({"room": {"rooms": []}, "presence": {"types": []}, "account_data": {"types": []}})
        return await self.send(cs_api.to_device_sync(only_to_device, since), user_id=user_id, device_id=device_id,
                               what="to-device catch-up")

    async def upload(self, user_id: str, data: bytes, filename: str) -> str:
        """Put bytes in the media repository as the puppet; returns the mxc:// URI."""
        assert self.session
        await self.durable()
        async with self.session.post(self.base_url + cs_api.MEDIA_UPLOAD, data=data, ssl=self.ssl,
                                     params={"user_id": user_id, "filename": filename},
                                     headers={"Authorization": f"Bearer {self.as_token}",
                                              "Content-Type": "application/octet-stream"}) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200 or "content_uri" not in body:
                raise MatrixError(resp.status, body or {}, "media upload")
            return body["content_uri"]

    async def download(self, user_id: str, mxc: str, max_bytes: int) -> bytes:
        """Fetch a media file (authenticated media) as the puppet, refusing anything over max_bytes."""
        assert self.session
        if not mxc.startswith("mxc://") or mxc.count("/") != 3:
            raise MatrixError(400, {"error": "not an mxc URI"}, "media download")
        await self.durable()
        server, media_id = mxc[6:].split("/", 1)
        async with self.session.get(self.base_url + cs_api.media_download_path(server, media_id),
                                    params={"user_id": user_id}, ssl=self.ssl,
                                    headers={"Authorization": f"Bearer {self.as_token}"}) as resp:
            if resp.status != 200:
                try:
                    body = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
                    body = {}
                raise MatrixError(resp.status, body if isinstance(body, dict) else {}, "media download")
            return await read_to_end(resp.content, max_bytes)

    def _raw(self, method: str, path: str, user_id: str):  # type: ignore[no-untyped-def]
        assert self.session
        return self.session.request(method, self.base_url + path, params={"user_id": user_id}, ssl=self.ssl,
                                    headers={"Authorization": f"Bearer {self.as_token}"})


class SenderForwardedKeys(nio.crypto.Olm):
    """nio's Olm machine, also taking a room key we asked for (``Crypto.request_room_key``) when the device that
    made the session forwards it itself.

    nio takes forwarded room keys only from its user's own verified devices; a puppet has no other device. An
    officer's Element (Rust crypto) answers a key request from a device it once gave a session to, with that
    session from the same message on: a key the puppet never got (lost on the way, or not decryptable here) comes
    back. Taken only when the forwarding device is the session's own (its Curve25519 key is the session's sender
    key, nobody else in the chain, its Ed25519 key the one the session claims): the same device vouching for the
    same session, as trustworthy as the ``m.room_key`` it replaces."""

    def _should_accept_forward(self, sender: str, sender_key: str, event: nio.ForwardedRoomKeyEvent) -> bool:
        content = event.source.get("content") or {}
        asked = self.outgoing_key_requests.get(event.session_id)
        device = self.device_store.device_from_sender_key(sender, sender_key)
        return (event.algorithm == MEGOLM_ALGORITHM and asked is not None and asked.room_id == event.room_id
                and asked.session_id == event.session_id and content.get("sender_key") == sender_key
                and not content.get("forwarding_curve25519_key_chain") and device is not None
                and content.get("sender_claimed_ed25519_key") == device.ed25519)


class PuppetClient(nio.AsyncClient):
    """A nio client whose every request is made as ``user_id`` on ``device_id`` (appservice masquerading).

    It also notes the devices each key query revealed (new, or with new keys) in ``new_devices``,
    whoever made the query (we, or nio itself inside ``room_send``), for ``Crypto`` to take.

    ``session``: the bridge's shared connection pool (``HomeserverApi.session``); it is the pool's, so
    closing the client leaves it open.
    """

    def __init__(self, homeserver: str, user: str, *, durable: Callable[[], Awaitable[None]],
                 session: aiohttp.ClientSession | None = None,
                 one_time_keys: tuple[int, int] = (NIO_ONE_TIME_KEYS, NIO_ONE_TIME_KEYS), **kwargs: Any) -> None:
        """``one_time_keys``: (how many to keep published, how few left on the homeserver before more are)."""
        super().__init__(homeserver, user, **kwargs)
        self.durable = durable
        self.one_time_keys, self.replenish_below = one_time_keys
        self.new_devices: set[tuple[str, str]] = set()
        self.shared_session = session
        if session is not None:
            self.client_session = session

    async def close(self) -> None:
        if self.shared_session is None:
            await super().close()

    def load_store(self) -> None:
        super().load_store()
        # nio builds its own Olm machine here and has no hook for another class; the subclass adds one rule and
        # no state, so the machine nio just loaded is given it rather than loaded a second time.
        if type(self.olm) is nio.crypto.Olm:
            self.olm.__class__ = SenderForwardedKeys

    async def keys_upload(self) -> nio.KeysUploadResponse | nio.KeysUploadError:
        """As nio's, but the one-time keys made for this upload are saved before it is sent. nio saves them only
        when the answer comes: a bridge killed in between made new keys under the same IDs next time, which the
        homeserver refuses for good ("One time key ... already exists"), so that puppet could never upload keys
        again (a pool that never filled after a kill -9 in the full test run)."""
        if not self.should_upload_keys:
            raise nio.LocalProtocolError("No key upload needed.")
        assert self.olm
        keys = self._keys_to_publish()
        self.olm.save_account()                     # an upload cut short is repeated with the very same keys
        method, path, data = NioApi.keys_upload(self.access_token, keys)
        resp = await self._send(nio.KeysUploadResponse, method, path, data)
        for _ in range(CLASH_TRIES):
            if not (isinstance(resp, nio.KeysUploadError) and "already exists" in (resp.message or "")
                    and "one_time_keys" in keys):
                break
            # The homeserver holds other keys under these IDs: this account was restored from a backup
            # (docs/deployment.md) and made keys after it that the backup lacks. Those IDs are spent: skip past
            # them (the skipped keys stay in the account, never uploaded; vodozemac keeps 5,000, so the keys the
            # homeserver still hands out from before the backup stay usable) and upload new ones.
            log.warning("%s: the homeserver already holds one-time keys under the IDs this device numbers next "
                        "(restored from a backup?); skipping %d IDs", self.user_id, CLASH_SKIP)
            account = self.olm.account
            account.mark_keys_as_published()
            account.generate_one_time_keys(CLASH_SKIP)
            account.mark_keys_as_published()
            keys = self._keys_to_publish()
            self.olm.save_account()
            method, path, data = NioApi.keys_upload(self.access_token, keys)
            resp = await self._send(nio.KeysUploadResponse, method, path, data)
        return resp

    @property
    def should_upload_keys(self) -> bool:
        """The device's first upload, or fewer than ``replenish_below`` one-time keys left on the homeserver."""
        olm = self.olm
        if olm is None:
            return False
        if not olm.account.shared:
            return True
        return olm.uploaded_key_count is not None and olm.uploaded_key_count < self.replenish_below

    def _keys_to_publish(self) -> dict[str, Any]:
        """The body of a key upload: the identity keys on the first, and one-time keys up to ``one_time_keys``
        on the homeserver. Keys made for an upload that never got its answer are not published yet, so they go
        again, unchanged (the homeserver takes a repeat)."""
        olm = self.olm
        assert olm
        account = olm.account
        held = (olm.uploaded_key_count or 0) if account.shared else 0
        waiting = len(account.one_time_keys["curve25519"])
        if self.one_time_keys - held - waiting > 0:
            account.generate_one_time_keys(self.one_time_keys - held - waiting)
        body: dict[str, Any] = {"one_time_keys": {
            f"signed_curve25519:{key_id}": self._signed({"key": key})
            for key_id, key in account.one_time_keys["curve25519"].items()}}
        if not account.shared:
            identity = account.identity_keys
            body["device_keys"] = self._signed({
                "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM], "device_id": self.device_id, "user_id": self.user_id,
                "keys": {f"curve25519:{self.device_id}": identity["curve25519"],
                         f"ed25519:{self.device_id}": identity["ed25519"]}})
        return body

    def _signed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with this device's signature."""
        assert self.olm
        return {**obj, "signatures": {self.user_id: {f"ed25519:{self.device_id}": self.olm.sign_json(obj)}}}

    async def keys_query(self) -> nio.KeysQueryResponse | nio.KeysQueryError:
        resp = await super().keys_query()
        if isinstance(resp, nio.KeysQueryResponse):
            self.new_devices |= {(user, device_id) for user, devices in resp.changed.items()
                                 for device_id, device in devices.items() if not device.deleted}
        return resp

    async def send(self, method: str, path: str, data: Any = None, headers: dict[str, str] | None = None,
                   trace_context: Any = None, timeout: float | None = None) -> aiohttp.ClientResponse:
        url = urlparse(path)
        query = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in ("user_id", "device_id")]
        query += [("user_id", self.user_id), ("device_id", self.device_id)]
        await self.durable()
        if timeout is None and self.shared_session is not None:
            timeout = REQUEST_TIMEOUT              # type: ignore[assignment]   (nio hands it on to aiohttp)
        return await super().send(method, urlunparse(url._replace(query=urlencode(query))), data, headers,
                                  trace_context, timeout)
