"""End-to-end encryption for every visitor puppet, fed by appservice transactions.

The only module that touches nio's crypto.  Each puppet has its own device and
its own nio ``PuppetClient`` (loaded on demand, state pickled in
``store.crypto_dir`` with the configured pickle key).  Nobody calls ``/sync`` in
normal operation: the appservice transaction already carries what a sync would
(MSC2409 to-device events, MSC3202 one-time-key counts and device lists), so we
cut it per puppet and hand it to nio as if it were a sync response.

    appservice transaction
        │  feed_transaction()                   ┌───────────────────────────┐
        ├─ to-device for @p:dev ─────────────▶  │ PuppetClient @p (nio)      │
        ├─ one-time-key counts for @p:dev ───▶  │  SyncResponse.from_dict()  │──▶ upkeep(): keys/upload,
        ├─ device-list changes (users that   ▶  │  receive_response()        │    keys/query, keys/claim,
        │  share a room with @p)                └───────────────────────────┘    to-device sends
        └─ room events ─▶ (chats.delivery stores them; calls observe() for
                           membership/state and decrypt() for m.room.encrypted)

What nio writes while taking one feed is one commit in the device's store (``_one_commit``): an Olm
message decrypts only once, so a kill between its session's write and its room key's would lose the key.

Rooms are not remembered by nio across restarts, so ``restore_room`` rebuilds a
room from ``/state`` when a puppet is loaded.  To-device messages that arrived
while the bridge was down are not repeated in catch-up transactions; ``catch_up``
fetches them at start-up, and ``recover_keys`` does the same for one puppet when
a room key is missing (the push can skip to-device messages); ``chat_over`` fetches
a finished chat's last ones. These are the only /sync calls, filtered to to-device,
with a stored ``since`` so the homeserver can delete what was delivered. A key in
neither place is asked of its sender's devices (``request_room_key``); the answer
is taken from the device that made the session (``homeserver.SenderForwardedKeys``).

Loaded clients are what a chat costs while it lasts, so they do not outlive their use: every operation
holds its client through ``_using`` (loaded on demand, never unloaded meanwhile), nio's SQLite store is
closed between operations (peewee reopens it on the next query: no descriptor per live puppet), puppets
share the bridge's connection pool to the homeserver (``HomeserverApi.session``, bounded), and
``unload_idle`` unloads clients nobody has used for a while (a closed chat's puppet soon after its last
send; the ``resident`` ones, the bot, never). A client loaded again rebuilds a room from ``/state`` on
first use and asks for its members' devices afresh, as it heard no device-list changes while unloaded.

Devices that appear after we sent something (a sign-in whose keys came a moment later) get the
keys of what was sent in the last ``new_device_window`` seconds, when their owner already held
them (``recent_keys.py``); ``PuppetClient`` notes every device a key query reveals.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import itertools
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

import nio
import peewee
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment

from ..private_files import private_dir
from ..store.puppets import Puppets
from . import cs_api
from .homeserver import MEGOLM_ALGORITHM, NIO_ONE_TIME_KEYS, OLM_ALGORITHM, HomeserverApi, PuppetClient
from .recent_keys import KeyDue, RecentKeys

log = logging.getLogger(__name__)

OTK_COUNTS = "org.matrix.msc3202.device_one_time_keys_count"
FALLBACK_KEYS = "org.matrix.msc3202.device_unused_fallback_key_types"
DEVICE_LISTS = "org.matrix.msc3202.device_lists"
TO_DEVICE = ("de.sorunome.msc2409.to_device", "to_device")
FLUSH_NOTE = "precinct.flush"      # content key of the no-op to-device note (see _send_room_keys)
NUDGE_EVERY = 3.0                  # seconds between two nudges of the appservice user's inbox
CRYPTO_STATE = frozenset({"m.room.member", "m.room.encryption"})   # the state nio is shown (observe)
# How long the device lists of a bot room's joined members count as known without asking (send_to_members).
# Their changes come at once in live transactions (invited members' never do: see INVITED_FRESH_S); this
# bounds how long a change the push never brought can go unseen.
MEMBERS_FRESH_S = 60.0
# How long the device lists of a bot room's invited members count as known. The push never tells of theirs, so
# they were asked before every send: a dispatch room with an officer invited but not joined cost a key query per
# notice and per edit (five a chat, bench/chat_life.py), in the bridge and in the homeserver. A device that appears
# in between is asked for at most this long after a send that skipped it (``_ask_invited_later``) and then given
# the keys of what it missed (recent_keys.py), so this stays well inside ``new_device_window``.
INVITED_FRESH_S = 10.0
# One-time keys a client keeps on the homeserver, and how few left before it publishes more. Each officer device
# that first sends a room key to a puppet takes one: a handful in a chat's life, so ten, topped up below five.
# nio keeps fifty and publishes again after every key taken; making, signing and uploading them, and the account
# that holds them written at every change, was the largest part of a new puppet's cost (bench/chat_life.py).
# The bot, in every dispatch room for good, keeps nio's fifty: a shift's sign-ins take many at once.
PUPPET_ONE_TIME_KEYS = (10, 5)
RESIDENT_ONE_TIME_KEYS = (NIO_ONE_TIME_KEYS, NIO_ONE_TIME_KEYS)
# Finished chats whose device inbox is emptied at once (chat_over): two to-device fetches each, and a thousand
# chats can end together.
INBOXES_EMPTIED_AT_ONCE = 4


class CryptoError(Exception):
    pass


class _RoutineNioLines(logging.Filter):
    """nio's warnings that are the normal course here, kept out of the operator's log: every new puppet's first
    room key meets officers' devices it has no Olm session with yet, and nio warns of each before it makes one
    (1,001 lines in five cycles of bench/load.py, one per conversation)."""

    ROUTINE = ("Missing session for device ",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.ROUTINE))


def quiet_routine_nio_lines() -> None:
    """Keep nio's routine warnings (``_RoutineNioLines``) out of the log; once per process, at logging set-up."""
    nio_log = logging.getLogger("nio.crypto.log")
    if not any(isinstance(f, _RoutineNioLines) for f in nio_log.filters):
        nio_log.addFilter(_RoutineNioLines())


_batches = itertools.count(1)


SENDER_DEVICE = "precinct.sender_device"   # added to a decrypted event: the device that encrypted it


def _sender_device(c: PuppetClient, event: nio.MegolmEvent) -> str | None:
    """The sender's device, from the session's Curve25519 key (what the Megolm session is bound to);
    the event's own (deprecated, sender-claimed) device_id only when the device is not known yet."""
    device = c.olm.device_store.device_from_sender_key(event.sender, event.sender_key) if c.olm else None
    return device.id if device else (event.device_id or None)


def _store_stem(user_id: str) -> str:
    """The name of a device's store file without its suffix: the user's localpart."""
    return user_id[1:].split(":")[0]


def _txn_safe(session_id: str) -> str:
    """A path-safe txn id part: Megolm session IDs are unpadded base64 and may hold '/' or '+'."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


# nio's sync parsing without its JSON-schema check of the response's containers (rooms, timelines, lists):
# this module builds those itself, and the check was a tenth of the bridge's CPU per chat
# (bench/chat_life.py). Each event in them is still checked by nio's own parser, as before.
_parse_sync = nio.SyncResponse.from_dict.__wrapped__


def _olm_digest(event: dict[str, Any]) -> str | None:
    """What identifies an Olm-encrypted to-device message (its sender key and ciphertexts); None for others."""
    content = event.get("content")
    if not isinstance(content, dict) or content.get("algorithm") != OLM_ALGORITHM:
        return None
    ciphertext = content.get("ciphertext")
    if not isinstance(ciphertext, dict) or not ciphertext:
        return None
    digest = hashlib.sha256(str(content.get("sender_key")).encode())
    for key in sorted(ciphertext):
        part = ciphertext[key]
        digest.update(b"\0" + key.encode() + b"\0" + str(part.get("body") if isinstance(part, dict) else part).encode())
    return digest.hexdigest()[:32]


def _sync_response(sync: dict[str, Any]) -> nio.SyncResponse:
    """Shape a transaction slice as a sync response. Each needs its own next_batch: nio skips repeats."""
    sync = {**sync, "next_batch": f"appservice-{next(_batches)}"}
    sync.setdefault("rooms", {"join": {}, "invite": {}, "leave": {}})
    try:
        return _parse_sync(nio.SyncResponse, sync)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CryptoError(f"could not shape a sync response: {type(e).__name__}: {e}") from e


_STORE_MODELS = frozenset(nio.store.SqliteStore.models)
_DDL: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}    # the table statements of a model list, as peewee wrote them


class _StoreDatabase(peewee.SqliteDatabase):
    """A puppet store's database whose ``bind_ctx`` binds just the models it is given.

    nio binds its models to one store's database around every store call (each puppet has its own file and
    they share the model classes); peewee then walks the models' references for each of them, which was the
    largest single cost of a chat in the bridge's profile (bench/chat_life.py). Around its calls nio passes
    every model its store uses, so the walk finds only models no call touches (tests/unit/test_puppet_store.py
    checks it); other lists (a schema upgrade) are bound as peewee does."""

    def bind_ctx(self, models, bind_refs=True, bind_backrefs=True):  # type: ignore[no-untyped-def]
        if frozenset(models) == _STORE_MODELS:
            return super().bind_ctx(models, False, False)
        return super().bind_ctx(models, bind_refs, bind_backrefs)

    def create_tables(self, models, **options):  # type: ignore[no-untyped-def]
        """nio makes its tables (``IF NOT EXISTS``) whenever a store opens: every new puppet and every reload
        of an unloaded one. peewee writes the same statements from the models each time; they are written
        once per process here and replayed, in one transaction."""
        key = (tuple(sorted(m.__name__ for m in models)), tuple(sorted(options.items())))
        statements = _DDL.get(key)
        with self.atomic():
            if statements is None:
                recorded: list[tuple[str, Any]] = []
                run = self.execute_sql
                self.execute_sql = lambda sql, params=None, *a, **k: (  # type: ignore[method-assign]
                    recorded.append((sql, params)), run(sql, params, *a, **k))[1]
                try:
                    super().create_tables(models, **options)
                finally:
                    del self.execute_sql
                _DDL[key] = recorded
            else:
                for sql, params in statements:
                    self.execute_sql(sql, params)


STORE_PAGE_SIZE = 1024


class PuppetStore(nio.store.SqliteStore):
    """nio's SQLite store without the work that changes nothing (same rows, same answers).

    nio saves the set of encrypted rooms after every sync response, even an empty set or rooms saved long
    ago, and looks the account row up again for every store call; fed a sync response per appservice
    transaction, that was two thirds of the store's queries and about a third of the bridge's CPU per chat
    (bench/chat_life.py). Here the rooms already saved are skipped and the account row (whose id never
    changes) is looked up once; the Olm account itself is still read fresh by ``load_account``. A device's
    trust (verified: asked for every message decrypted; blacklisted and ignored: for every device each time a
    room key is shared) is read once per device keys, until anything writes trust or device keys."""

    def _create_database(self) -> peewee.SqliteDatabase:
        # 1 KiB pages: nio's 28 tables and indexes take a page each, even empty, so a device's store was 124 KiB
        # of 4 KiB pages, most of them empty; one per chat kept (docs/deployment.md). It takes effect when a new
        # store's first table is made; an existing store keeps its pages.
        return _StoreDatabase(self.database_path, pragmas={"foreign_keys": 1, "secure_delete": 1,
                                                           "page_size": STORE_PAGE_SIZE})

    def __post_init__(self) -> None:
        self._account_row: Any = None
        self._saved_rooms: set[str] = set()
        self._trusted: dict[tuple[str, str, str, str], bool] = {}     # (kind, user, device, ed25519) → trust
        super().__post_init__()

    def _trust(self, kind: str, device: Any, read: Callable[[Any], bool]) -> bool:
        key = (kind, device.user_id, device.id, device.ed25519)
        if key not in self._trusted:
            self._trusted[key] = read(device)
        return self._trusted[key]

    def is_device_verified(self, device):  # type: ignore[no-untyped-def]
        return self._trust("verified", device, super().is_device_verified)

    def is_device_blacklisted(self, device):  # type: ignore[no-untyped-def]
        return self._trust("blacklisted", device, super().is_device_blacklisted)

    def is_device_ignored(self, device):  # type: ignore[no-untyped-def]
        return self._trust("ignored", device, super().is_device_ignored)

    def _trust_written(self, result: Any) -> Any:
        self._trusted.clear()
        return result

    def verify_device(self, device):  # type: ignore[no-untyped-def]
        return self._trust_written(super().verify_device(device))

    def unverify_device(self, device):  # type: ignore[no-untyped-def]
        return self._trust_written(super().unverify_device(device))

    def blacklist_device(self, device):  # type: ignore[no-untyped-def]
        return self._trust_written(super().blacklist_device(device))

    def unblacklist_device(self, device):  # type: ignore[no-untyped-def]
        return self._trust_written(super().unblacklist_device(device))

    def ignore_device(self, device):  # type: ignore[no-untyped-def]
        return self._trust_written(super().ignore_device(device))

    def unignore_device(self, device):  # type: ignore[no-untyped-def]
        return self._trust_written(super().unignore_device(device))

    def ignore_devices(self, devices):  # type: ignore[no-untyped-def]
        return self._trust_written(super().ignore_devices(devices))

    def save_device_keys(self, device_keys):  # type: ignore[no-untyped-def]
        if not any(device_keys.values()):
            return None     # nio saves after every key query, mostly with nothing changed: no write, no reopen
        return self._trust_written(super().save_device_keys(device_keys))

    def _get_account(self):  # type: ignore[no-untyped-def]
        if self._account_row is None:
            self._account_row = super()._get_account()
        return self._account_row

    def load_account(self):  # type: ignore[no-untyped-def]
        self._account_row = None            # its pickle and flags are read from the database, never cached
        return super().load_account()

    def load_encrypted_rooms(self):  # type: ignore[no-untyped-def]
        rooms = super().load_encrypted_rooms()
        self._saved_rooms = set(rooms)
        return rooms

    def save_encrypted_rooms(self, rooms):  # type: ignore[no-untyped-def]
        new = set(rooms) - self._saved_rooms
        if new:
            super().save_encrypted_rooms(new)
            self._saved_rooms |= new


CREATED_KEYS_DAYS = 7    # how long a room key the bridge created is kept for officers who join late
OLM_TAKEN_DAYS = 30      # how long an Olm message handled is remembered (the inbox hands it over again until then)


class Crypto:
    def __init__(self, api: HomeserverApi, homeserver_url: str, store_dir: Path, pickle_key: str,
                 puppets: Puppets, new_device_window: float = 60.0, blind_inbox_user: str | None = None,
                 resident: Iterable[str] = (), clock: Callable[[], float] = time.monotonic,
                 may_hold_keys: Callable[[str], bool] = lambda user_id: True) -> None:
        self.api = api
        self.homeserver_url = homeserver_url
        self.store_dir = store_dir
        self.pickle_key = pickle_key
        self.puppets = puppets
        self.clients: dict[str, PuppetClient] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._load_lock = asyncio.Lock()
        self._in_use: Counter[str] = Counter()     # operations under way per client: never unloaded meanwhile
        self._used: dict[str, float] = {}          # when each loaded client was last used (clock)
        self.resident = frozenset(resident)        # clients never unloaded for idleness (the bot)
        self._clock = clock
        self.loads = 0                             # clients loaded so far (tests, benchmarks)
        self._last_recovery: dict[str, float] = {}
        # What each client encrypted lately, for devices of its holders that we see only afterwards.
        self._recent = RecentKeys(new_device_window)
        self._last_sweep = 0.0
        # The appservice's own user: Synapse refuses it /sync, so a to-device message the push skips
        # never reaches it (see _send_room_keys).
        self.blind_inbox_user = blind_inbox_user
        self._last_nudge = -NUDGE_EVERY
        self._members_asked: dict[tuple[str, str], float] = {}   # (client, room) → when its members were asked
        self._invited_asked: dict[tuple[str, str], float] = {}   # (client, room) → when its invited were asked
        self._invited_fresh = min(INVITED_FRESH_S, new_device_window / 2)
        self._ask_later: dict[tuple[str, str], asyncio.TimerHandle] = {}   # follow-up asks of invited members
        self._asking: set[asyncio.Task[None]] = set()
        # Who may ever hold a room key. nio shares with every member it knows, so members who may not
        # are never shown to it: their membership events stop here (see _admitted).
        self.may_hold_keys = may_hold_keys          # who may be given room keys (officers/access.py)
        self._emptying = asyncio.Semaphore(INBOXES_EMPTIED_AT_ONCE)

    # ---- loading -------------------------------------------------------------------------------
    def lock(self, user_id: str) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    async def client(self, user_id: str) -> PuppetClient:
        """The puppet's nio client, loading its pickled device state the first time.

        For one operation on it use ``_using``: a client got here may be unloaded at the next await."""
        if (c := self.clients.get(user_id)) is not None:
            self._used[user_id] = self._clock()
            return c
        async with self._load_lock:
            if (c := self.clients.get(user_id)) is not None:
                return c
            puppet = self.puppets.get(user_id)
            if puppet is None:
                raise CryptoError(f"unknown puppet {user_id}")
            private_dir(self.store_dir)          # pickled device keys: owner-only whatever the umask
            config = nio.AsyncClientConfig(
                encryption_enabled=True, store=PuppetStore, store_name=f"{_store_stem(user_id)}.db",
                pickle_key=self.pickle_key, max_timeouts=3, max_limit_exceeded=5, request_timeout=30)
            c = PuppetClient(self.homeserver_url, user_id, device_id=puppet.device_id, durable=self.api.durable,
                             store_path=str(self.store_dir), config=config, ssl=self.api.ssl,
                             session=self.api.session,
                             one_time_keys=RESIDENT_ONE_TIME_KEYS if user_id in self.resident else PUPPET_ONE_TIME_KEYS)
            c.restore_login(user_id, puppet.device_id, self.api.as_token)
            if c.olm:
                # Its only device is this one: nio would otherwise ask the homeserver for the client's own
                # device list whenever it sees itself in a room (once a chat, for nothing to share with).
                c.olm.tracked_users.add(user_id)
            self.clients[user_id] = c
            self._used[user_id] = self._clock()
            self.loads += 1
            if not self._in_use[user_id]:
                _close_store(c)
            return c

    @contextlib.asynccontextmanager
    async def _using(self, user_id: str, *, locked: bool = True) -> AsyncIterator[PuppetClient]:
        """The puppet's client for one operation: loaded if need be, one locked operation per device at a
        time, never unloaded while in use, its store file closed again when the last user is done."""
        self._in_use[user_id] += 1
        try:
            c = await self.client(user_id)
            if locked:
                async with self.lock(user_id):
                    yield c
            else:
                yield c
        finally:
            self._in_use[user_id] -= 1
            if not self._in_use[user_id]:
                del self._in_use[user_id]
                if (loaded := self.clients.get(user_id)) is not None:
                    self._used[user_id] = self._clock()
                    _close_store(loaded)

    @property
    def live_clients(self) -> int:
        return len(self.clients)

    async def unload_idle(self, idle_seconds: float) -> int:
        """Unload the clients nobody has used for ``idle_seconds`` (not the resident ones, none in use);
        how many. They are loaded again on demand, from their stores."""
        now = self._clock()
        idle = [u for u in self.clients if u not in self.resident and not self._in_use[u]
                and not self.lock(u).locked() and now - self._used.get(u, now) >= idle_seconds]
        for user_id in idle:
            await self.unload(user_id)
        return len(idle)

    async def upload_device_keys(self, user_id: str) -> dict[str, str]:
        """Publish the device's identity and one-time keys; returns {"ed25519": …, "curve25519": …}."""
        async with self._using(user_id) as c:
            await self._upkeep(c)
            assert c.olm
            return dict(c.olm.account.identity_keys)

    async def unload(self, user_id: str) -> None:
        """Free the client's memory now (it is loaded again if ever needed); one in use is left to the idle
        sweep. What is kept beside it (keys it created, recent sends) goes only with ``forget``."""
        if self._in_use[user_id] or self.lock(user_id).locked():
            return
        c = self.clients.pop(user_id, None)
        self._used.pop(user_id, None)
        self._locks.pop(user_id, None)
        if c:
            await c.close()
            _close_store(c)

    async def discard(self, user_id: str) -> None:
        """A retired puppet: forgotten, and its device's store deleted (its Olm account and every room key it
        held: nothing here can decrypt that chat's room any more)."""
        await self.forget(user_id)
        if user_id in self.clients:
            raise CryptoError(f"{user_id} is in use; not discarded")
        for path in self.store_dir.glob(f"{_store_stem(user_id)}.db*"):   # the file and its journal, if any
            path.unlink(missing_ok=True)

    async def chat_over(self, user_id: str) -> None:
        """A puppet whose chat is over and sent its last: its device's inbox emptied, then ``forget``.

        The homeserver keeps every to-device message it pushed to the appservice (synapse#11423) until the device
        fetches its inbox past it: each finished chat left its officers' room keys and key requests there (1.5 kB
        a chat) until its puppet was retired at the end of the record's retention, years later. What the inbox
        still holds is handed to nio first (``catch_up``: anything not had yet is taken), and a second fetch from
        where that one ended tells the homeserver to drop it. Best effort: what is left goes with the device at
        retirement."""
        try:
            async with self._emptying:
                if await self.catch_up(user_id):
                    await self.catch_up(user_id)
        except Exception as e:                   # the homeserver away, say; the chat's end does not wait on this
            log.info("inbox of %s (its chat is over) not emptied: %s: %s", user_id, type(e).__name__, e)
        await self.forget(user_id)

    async def forget(self, user_id: str) -> None:
        """A puppet whose chat is over: unload it and drop everything kept about it in memory."""
        await self.unload(user_id)
        self._recent.forget(user_id)
        self._last_recovery.pop(user_id, None)
        for asked in [a for a in self._members_asked if a[0] == user_id]:
            del self._members_asked[asked]
        self.puppets.forget_room_keys(user_id)

    async def close(self) -> None:
        for handle in self._ask_later.values():
            handle.cancel()
        self._ask_later.clear()
        for task in list(self._asking):
            task.cancel()
        await asyncio.gather(*self._asking, return_exceptions=True)
        for user_id in list(self.clients):
            await self.unload(user_id)

    # ---- feeding ---------------------------------------------------------------------------------
    async def feed_transaction(self, body: dict[str, Any], is_puppet) -> None:  # type: ignore[no-untyped-def]
        """Hand each puppet its part of a transaction's crypto payload (to-device, key counts, device lists)."""
        per_device: dict[str, dict[str, Any]] = {}

        def slot(user_id: str) -> dict[str, Any]:
            return per_device.setdefault(user_id, {"to_device": [], "otk": None, "fallback": None, "changed": set(),
                                                   "left": set()})

        for key in TO_DEVICE:
            for ev in body.get(key, []) or []:
                user_id = ev.get("to_user_id")
                if user_id and is_puppet(user_id) and FLUSH_NOTE not in (ev.get("content") or {}):
                    slot(user_id)["to_device"].append(
                        {k: ev[k] for k in ("type", "sender", "content") if k in ev})
        # Per user, per device: Synapse also lists the user's cross-signing keys there (as if devices, with no
        # counts), so only the entry of the puppet's own device counts. Taking whichever came last left nio with
        # no count, and a puppet whose keys officers' new devices took never made new ones while the bridge ran.
        for key, field in ((OTK_COUNTS, "otk"), (FALLBACK_KEYS, "fallback")):
            for user_id, devices in (body.get(key) or {}).items():
                # Counts alone never load a client (below), so those of unloaded ones are not even looked at.
                if (user_id in self.clients or user_id in per_device) and is_puppet(user_id) \
                        and isinstance(devices, dict):
                    own = self._device_of(user_id)
                    if own is not None and isinstance(devices.get(own), dict if field == "otk" else list):
                        slot(user_id)[field] = devices[own]
        lists = body.get(DEVICE_LISTS) or {}
        changed = {u for u in lists.get("changed", []) or [] if isinstance(u, str)}
        left = {u for u in lists.get("left", []) or [] if isinstance(u, str)}
        if changed or left:
            for user_id, c in self.clients.items():
                members = {u for room in c.rooms.values() for u in room.users}
                if members & (changed | left):
                    slot(user_id)["changed"] |= members & changed
                    slot(user_id)["left"] |= members & left
        for user_id, part in per_device.items():
            if user_id not in self.clients and not part["to_device"]:
                # Key counts alone do not load an idle puppet (a closed chat's would stay loaded for good);
                # nio asks for more keys by those counts once something loads it again.
                continue
            if not (part["to_device"] or part["changed"] or part["left"]) and _nothing_new(
                    self.clients.get(user_id), part["otk"]):
                continue        # most transactions: the same key counts for every loaded client, nothing else
            if not self.puppets.exists(user_id):     # last: a store read, and most transactions end above
                continue
            sync: dict[str, Any] = {"to_device": {"events": part["to_device"]},
                                    "device_lists": {"changed": sorted(part["changed"]), "left": sorted(part["left"])}}
            if part["otk"] is not None:
                sync["device_one_time_keys_count"] = part["otk"]
            if part["fallback"] is not None:
                sync["device_unused_fallback_key_types"] = part["fallback"]
            await self._receive(user_id, sync)

    def _device_of(self, user_id: str) -> str | None:
        """The device the bridge runs for this puppet (or the bot): the loaded client's, else the store's."""
        if (c := self.clients.get(user_id)) is not None:
            return c.device_id
        puppet = self.puppets.get(user_id)
        return puppet.device_id if puppet is not None else None

    def _admitted(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The state nio is shown: membership and encryption, without members who may not hold room keys.

        Only who is in the room and whether it is encrypted matter to encryption; every other state event
        (a new room brings eight: power levels, join rules, name, topic, ACL...) would cost nio a sync
        response to parse and validate for nothing (bench/chat_life.py's profile)."""
        return [e for e in events if e.get("type") in CRYPTO_STATE
                and (e.get("type") != "m.room.member" or self.may_hold_keys(str(e.get("state_key"))))]

    async def observe(self, user_id: str, room_id: str, events: list[dict[str, Any]]) -> None:
        """Let nio see a room's state/membership events (who to encrypt for, whether it is encrypted).

        A member who joins is asked for their devices again: while only invited they shared no joined
        room with us, so the homeserver told us of none of their device changes.
        """
        if user_id not in self.clients:
            return      # an unloaded client rebuilds its rooms from /state when loaded again (_ensure_room)
        events = self._admitted(events)
        if not events:
            return      # nothing encryption needs
        joined = {str(e.get("state_key")) for e in events if e.get("type") == "m.room.member"
                  and (e.get("content") or {}).get("membership") == "join" and e.get("state_key") != user_id}
        if joined:
            async with self._using(user_id, locked=False) as c:
                if c.olm:
                    c.olm.users_for_key_query.update(joined)
        join = {"timeline": {"events": events, "limited": False}, "state": {"events": []}}
        await self._receive(user_id, {"rooms": {"join": {room_id: join}}})

    async def restore_room(self, user_id: str, room_id: str) -> None:
        """Show the client the room's membership and encryption from ``/state``, unless it holds them already.

        Under the device's lock, as every other reader of ``/state`` (``_ensure_room``): a new chat's first
        message, sent while its set-up restored the room, read the state a second time (bench/chat_life.py).
        Later changes come as events (``observe``)."""
        async with self._using(user_id) as c:
            await self._ensure_room(c, room_id)

    async def member_name(self, user_id: str, room_id: str, member: str) -> str | None:
        """The display name ``member`` has in the room as the puppet sees it (its state fetched again when
        the client was unloaded meanwhile); None when not a member."""
        async with self._using(user_id, locked=False) as c:
            room = c.rooms.get(room_id)
            if room is None or not room.members_synced:
                async with self.lock(user_id):
                    await self._ensure_room(c, room_id)
                room = c.rooms.get(room_id)
            return (room.user_name(member) or member) if room and member in room.users else None

    @staticmethod
    def _members_known(c: PuppetClient, room_id: str) -> None:
        """The full state was given: nio must not fetch /joined_members itself (it would not be filtered)."""
        if room_id in c.rooms:
            c.rooms[room_id].members_synced = True

    async def _receive(self, user_id: str, sync: dict[str, Any]) -> None:
        """Hand nio a sync-shaped part of a transaction or of the inbox, without the Olm messages it has had.

        The homeserver keeps what it pushed in the device's inbox, so the inbox fetch (``catch_up``) hands those
        over again, as does a transaction fed again after a crash; decrypting one a second time fails, and nio
        then logs an error and, its session with that device over an hour old, makes a new one for nothing (a
        restart with 200 chats under way logged 16 such errors and 119 warnings)."""
        events = (sync.get("to_device") or {}).get("events") or []
        digests = [_olm_digest(e) for e in events]
        async with self._using(user_id) as c:        # checked and noted under the device's lock: one feed at a time
            taken = self.puppets.olm_taken(user_id, [d for d in digests if d])
            if taken:
                log.debug("%s: %d Olm messages handled before are passed over", user_id, len(taken))
                sync = {**sync, "to_device": {"events": [e for e, d in zip(events, digests) if d not in taken]}}
            with _one_commit(c):
                await c.receive_response(_sync_response(sync))
            # After nio has stored what they carried: a crash before this only means they are handled again.
            self.puppets.note_olm_taken(user_id, [d for d in digests if d and d not in taken])
            try:
                await self._upkeep(c)
            except Exception as e:   # nio keeps its flags set, so the next feed retries
                log.warning("key upkeep for %s failed: %s", user_id, e)

    async def _upkeep(self, c: PuppetClient) -> None:
        """What a syncing client does after each sync: keep keys published, queried, claimed and sent."""
        if c.should_upload_keys:
            _check(await c.keys_upload(), "keys upload")
        if c.should_query_keys:
            _check(await c.keys_query(), "keys query")
        if c.should_claim_keys:
            _check(await c.keys_claim(c.get_users_for_key_claiming()), "keys claim")
        await c.send_to_device_messages()
        await self._give_recent_keys(c)

    async def recover_keys(self, user_id: str, min_interval: float = 3.0) -> bool:
        """Fetch the device inbox once in a while when a room key is missing; True if a fetch was made.

        The appservice push can skip to-device messages (Synapse 1.163, several sent at once to
        different puppets), but they stay in the device's inbox, so a missing key is looked for there
        before the officer is ever asked to resend.
        """
        now = asyncio.get_running_loop().time()
        if now - self._last_recovery.get(user_id, -min_interval) < min_interval:
            return False
        self._last_recovery[user_id] = now
        await self.catch_up(user_id)
        return True

    async def request_room_key(self, user_id: str, event: dict[str, Any]) -> bool:
        """Ask the sender's devices for the room key of ``event``, once per session (nio keeps the request in the
        device's store, so a restart does not ask again); True if asked now.

        For a key that is neither pushed nor in the inbox: lost on the way, or not decryptable here. Element
        (Rust crypto) answers a device it gave the session to, with the session from that message on, and
        ``SenderForwardedKeys`` takes it; clients that do not answer leave the officer to be asked to resend.
        nio asks by itself at the first failure when its Olm session with the sending device is under an hour
        old (this then finds the request made); this covers the rest, the bot's long-known officers among them."""
        parsed = nio.MegolmEvent.from_dict(event)
        if not isinstance(parsed, nio.MegolmEvent):
            raise CryptoError(f"not a Megolm event: {event.get('event_id')}")
        parsed.room_id = event["room_id"]
        async with self._using(user_id) as c:
            assert c.olm
            queued = c.olm.outgoing_to_device_messages
            if parsed.session_id in c.olm.outgoing_key_requests or any(
                    isinstance(m, nio.RoomKeyRequestMessage) and m.session_id == parsed.session_id for m in queued):
                return False
            # To every device of the sender (the event's device_id is deprecated and may be absent), through nio's
            # queue: nio notes the request as outgoing once the homeserver has taken it (which is what lets the
            # answer in), and a request that failed stays queued for the next upkeep.
            queued.append(parsed.as_key_request(parsed.sender, c.device_id, parsed.session_id))
            for resp in await c.send_to_device_messages():
                _check(resp, "room key request")
        log.info("%s: asked %s for the room key of %s (session %s)", user_id, parsed.sender,
                 event.get("event_id"), parsed.session_id)
        return True

    async def catch_up(self, user_id: str) -> int:
        """Fetch to-device messages from the device inbox (start-up, recover_keys, chat_over); how many came.
        The fetch starts where the last one ended, and the homeserver drops what came before that."""
        puppet = self.puppets.get(user_id)
        if puppet is None:
            return 0
        data = await self.api.to_device_backlog(user_id, puppet.device_id, puppet.next_batch)
        sync = {"to_device": data.get("to_device", {"events": []}),
                "device_one_time_keys_count": data.get("device_one_time_keys_count", {})}
        await self._receive(user_id, sync)
        if data.get("next_batch"):
            self.puppets.mark(user_id, "next_batch", data["next_batch"])
        return len(sync["to_device"].get("events") or [])

    # ---- using ---------------------------------------------------------------------------------
    async def decrypt(self, user_id: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """The decrypted event (type, content, sender, event_id…) or None when its keys are not here yet."""
        # Straight to nio's Megolm parser (which checks the event against its schema): the general one checks
        # a looser schema first only to pick it, a thirtieth of the bridge's CPU per chat (bench/chat_life.py).
        content = event.get("content")
        megolm = isinstance(content, dict) and content.get("algorithm") == MEGOLM_ALGORITHM
        parsed = nio.MegolmEvent.from_dict(event) if megolm else None
        if not isinstance(parsed, nio.MegolmEvent):
            raise CryptoError(f"not a Megolm event: {event.get('event_id')}")
        parsed.room_id = event["room_id"]
        async with self._using(user_id, locked=False) as c:
            try:
                decrypted = c.decrypt_event(parsed)
            except nio.EncryptionError as e:
                log.debug("cannot decrypt %s yet: %s", event.get("event_id"), e)
                return None
            sender_device = _sender_device(c, parsed)
        source = dict(decrypted.source)
        source[SENDER_DEVICE] = sender_device
        source.setdefault("sender", event.get("sender"))
        source.setdefault("origin_server_ts", event.get("origin_server_ts"))
        source["event_id"] = event["event_id"]
        source["room_id"] = event["room_id"]
        return source

    async def share_room_key(self, user_id: str, room_id: str, joined: Iterable[str] = ()) -> None:
        """Share a new room key with every member device now (called when an officer joins).

        ``joined``: the members who just joined; they are also given the keys of earlier sessions. Their
        device lists were asked for afresh when their join was shown to the client (``observe``: while only
        invited, the homeserver told us of none of their device changes), or, for a client loaded since,
        with everyone's when it rebuilt the room (``_ensure_room``); asking a third time here was a key query
        per chat for nothing (bench/chat_life.py).
        """
        async with self._using(user_id) as c:
            assert c.olm
            joined = [u for u in joined if self.may_hold_keys(u)]
            await self._ensure_room(c, room_id)
            # nio does not count invite → join as a change, so rotate explicitly: a fresh key for
            # every device present now, including ones that appeared after the invite.
            c.invalidate_outbound_session(room_id)
            await self._share_new_session(c, room_id)
            # Messages sent just before the join (it reaches us a moment later) used an earlier key.
            await self._reshare_earlier_keys(c, room_id, joined)
            await self._give_recent_keys(c)

    async def send(self, user_id: str, room_id: str, event_type: str, content: dict[str, Any], txn_id: str) -> str:
        """Encrypt (the room is encrypted) and send with a stable txn_id; returns the event ID.

        Only the encryption holds the device's lock; the homeserver's answer (0.3–0.6 s under load) does not:
        holding it across the send, a chat's backlog after a restart (dozens of messages sent one by one)
        kept the officers' replies to that citizen waiting to be decrypted for 10–18 s (bench/kill_loop.py)."""
        async with self._using(user_id) as c:
            await self._ensure_room(c, room_id)
            await self._give_recent_keys(c)
            if c.olm.should_share_group_session(room_id):  # type: ignore[union-attr]
                await self._share_new_session(c, room_id)
            self._note_sending(c, room_id)
            try:
                sent_type, sent = c.encrypt(room_id, event_type, content)
            except (nio.LocalProtocolError, nio.GroupEncryptionError, nio.MembersSyncError) as e:
                raise CryptoError(f"could not encrypt: {e}") from e
            await self._give_recent_keys(c)
            device_id = c.device_id
        data = await self.api.send(cs_api.send_event(room_id, sent_type, txn_id, sent), user_id=user_id,
                                   device_id=device_id, what="send encrypted")
        return str(data["event_id"])

    async def send_to_members(self, user_id: str, room_id: str, event_type: str, content: dict[str, Any],
                              txn_id: str) -> str:
        """Encrypt for every current member device, then send; for the bot's few messages in its rooms.

        Unlike ``send`` this asks for the device lists of invited members at most once per INVITED_FRESH_S (and
        once more that long after a send that skipped them) and of joined ones at most once per MEMBERS_FRESH_S
        (the live push names joined members whose devices changed at once, and a dispatch room in a burst sends
        a dozen notices a chat), starts a new room key when any member device
        lacks the current one (officers sign in on new devices all the time), and keeps ``m.relates_to`` in
        the clear, as the spec asks, so edits and reactions aggregate.
        """
        async with self._using(user_id) as c:
            await self._ensure_room(c, room_id)
            olm, room = c.olm, c.rooms[room_id]
            assert olm
            asked = (user_id, room_id)
            now = self._clock()
            due = now - self._members_asked.get(asked, -MEMBERS_FRESH_S) >= MEMBERS_FRESH_S
            # The homeserver reports device changes only for users who share a *joined* room with us, so an
            # officer invited to a dispatch room who signs in on a new device is heard of only when asked.
            invited_due = due or now - self._invited_asked.get(asked, -math.inf) >= self._invited_fresh
            olm.users_for_key_query.update(room.users if due else room.invited_users if invited_due else ())
            if c.should_query_keys:
                _check(await c.keys_query(), "keys query")
            if due:
                self._members_asked[asked] = now
            if invited_due:
                self._invited_asked[asked] = now
            elif room.invited_users:
                self._ask_invited_later(user_id, room_id)
            if c.should_claim_keys:
                _check(await c.keys_claim(c.get_users_for_key_claiming()), "keys claim")
            # Devices seen only now get what was sent just before (under the key nio has just dropped).
            await self._give_recent_keys(c)
            if olm.should_share_group_session(room_id) or _devices_without_session(c, room_id):
                c.invalidate_outbound_session(room_id)
                await self._share_new_session(c, room_id)
            self._note_sending(c, room_id)
            encrypted = olm.group_encrypt(room_id, {"type": event_type, "content": content})
            if "m.relates_to" in content:
                encrypted["m.relates_to"] = content["m.relates_to"]
            device_id = c.device_id
        # The send itself runs outside the device's lock: encrypting is what must be one at a time, and the
        # homeserver's answer (about 0.2 s under load) need not hold up the next message's encryption.
        data = await self.api.send(cs_api.send_event(room_id, "m.room.encrypted", txn_id, encrypted),
                                   user_id=user_id, device_id=device_id, what="send encrypted")
        return data["event_id"]

    def _ask_invited_later(self, user_id: str, room_id: str) -> None:
        """Ask the room's invited members for their devices once their last answer is INVITED_FRESH_S old: a
        device that appeared just before a send that did not ask is then found within the new-device window,
        and given that send's key (``_give_recent_keys``), even when the bot sends nothing more."""
        asked = (user_id, room_id)
        if asked in self._ask_later:
            return
        delay = max(0.0, self._invited_asked.get(asked, self._clock()) + self._invited_fresh - self._clock())

        def start() -> None:
            del self._ask_later[asked]
            task = asyncio.get_running_loop().create_task(self._ask_invited(user_id, room_id))
            self._asking.add(task)
            task.add_done_callback(self._asking.discard)
        self._ask_later[asked] = asyncio.get_running_loop().call_later(delay, start)

    async def _ask_invited(self, user_id: str, room_id: str) -> None:
        try:
            async with self._using(user_id) as c:
                room = c.rooms.get(room_id)
                if c.olm is None or room is None:
                    return
                c.olm.users_for_key_query.update(room.invited_users)
                if c.should_query_keys:
                    _check(await c.keys_query(), "keys query")
                self._invited_asked[(user_id, room_id)] = self._clock()
                await self._give_recent_keys(c)
        except asyncio.CancelledError:
            raise
        except Exception as e:       # not noted as asked: the next send asks again
            log.warning("asking the invited members of %s for their devices failed: %s", room_id, e)

    async def _share_new_session(self, c: PuppetClient, room_id: str) -> None:
        _check(await c.share_group_session(room_id, ignore_unverified_devices=True), "share room key")
        session = c.olm.outbound_group_sessions.get(room_id)  # type: ignore[union-attr]
        if session is None:
            return
        # Nothing has been encrypted with it yet, so this is its key from the first message on. Stored (and
        # committed before the first message under it is sent): an officer who joins later, even after a
        # restart that lost nio's in-memory outbound session, is given it (_reshare_earlier_keys).
        self.puppets.remember_room_key(c.user_id, room_id, {
            "algorithm": MEGOLM_ALGORITHM, "room_id": room_id, "session_id": session.id,
            "session_key": session.session_key})

    def _note_sending(self, c: PuppetClient, room_id: str) -> None:
        """Remember the room key as it is just before one message is encrypted with it (recent_keys.py)."""
        session = c.olm.outbound_group_sessions.get(room_id) if c.olm else None
        if session is None or not session.shared:
            return
        now = asyncio.get_running_loop().time()
        room = c.rooms.get(room_id)
        self._recent.sent(c.user_id, room_id, session.id, session.session_key, session.users_shared_with, now,
                          members=[u for u in room.users if u != c.user_id] if room else ())
        if now - self._last_sweep > 60:
            self._last_sweep = now
            self._recent.sweep(now)
            # Rooms the bot stays in outlive their chats; a week is past any chat's wait for its first officer.
            self.puppets.forget_room_keys_before(int(time.time() * 1000) - CREATED_KEYS_DAYS * 86_400_000)
            self.puppets.forget_olm_taken_before(int(time.time() * 1000) - OLM_TAKEN_DAYS * 86_400_000)

    async def _give_recent_keys(self, c: PuppetClient) -> None:
        """Devices a key query has just revealed get the keys of what this client sent in the last moments,
        when their owner already held those keys on another device (see recent_keys.py)."""
        if not c.new_devices or c.olm is None:
            return
        new, c.new_devices = c.new_devices, set()
        olm = c.olm
        owed = self._recent.due(c.user_id, new, asyncio.get_running_loop().time(), self.may_hold_keys)
        if not owed:
            return
        try:
            devices = {(d.user_id, d.id): d for user in {u for due in owed for u, _ in due.devices}
                       for d in olm.device_store.active_user_devices(user)}
            missing: dict[str, list[str]] = {}
            for user, device_id in {d for due in owed for d in due.devices}:
                device = devices.get((user, device_id))
                if device is not None and olm.session_store.get(device.curve25519) is None:
                    missing.setdefault(user, []).append(device_id)
            if missing:
                _check(await c.keys_claim(missing), "keys claim")
            for due in owed:
                await self._send_room_key(c, due, devices)
        except Exception as e:           # never a reason to fail the send around it
            c.new_devices |= new          # what was not given yet is given on the next try
            log.warning("room keys for new devices of %s not given yet: %s", c.user_id, e)

    async def _send_room_key(self, c: PuppetClient, due: KeyDue, devices: dict[tuple[str, str], Any]) -> None:
        olm = c.olm
        assert olm
        messages: dict[str, dict[str, Any]] = {}
        for user, device_id in due.devices:
            device = devices.get((user, device_id))
            session = olm.session_store.get(device.curve25519) if device is not None else None
            if session is None:
                log.warning("no Olm session with %s %s: room key of %s not given", user, device_id, due.room_id)
                continue
            messages.setdefault(user, {})[device_id] = olm._olm_encrypt(session, device, "m.room_key", due.content)
        if not messages:
            return
        await self._send_room_keys(c, messages, due.session_id, "room key for a new device")
        self._recent.given(due, {(user, d) for user, ds in messages.items() for d in ds})
        log.info("%s gave its recent room key in %s to new devices %s", c.user_id, due.room_id,
                 sorted(f"{u} {d}" for u, ds in messages.items() for d in ds))

    async def _send_room_keys(self, c: PuppetClient, messages: dict[str, dict[str, Any]], session_id: str,
                              what: str) -> None:
        """One sendToDevice request of Olm-encrypted room keys, plus a no-op note to the appservice user's device.

        Synapse 1.163 pushes to-device messages to the appservice per request, reading only that
        request's recipients from its stored position and then moving the position past them; when
        two requests are handled out of order, what the earlier one held for others is never pushed
        (bench/README.md). Puppets fetch their inbox when a key is missing; the appservice user may
        not, so an officer's room key for the bot, sent at the moment we send keys to that officer's
        new device, could be lost for good. With the bot among this request's recipients, its push
        carries everything pending for the bot up to it. The note itself is dropped on arrival.
        """
        blind = self.puppets.get(self.blind_inbox_user) if self.blind_inbox_user else None
        if blind is not None and blind.device_id not in messages.get(blind.user_id, {}):
            mine = {**messages.get(blind.user_id, {}), blind.device_id: {FLUSH_NOTE: True}}
            messages = {**messages, blind.user_id: mine}
        await self.api.send(cs_api.send_to_device("m.room.encrypted", f"precinct.{next(_batches)}.{_txn_safe(session_id)}",
                                                  messages), user_id=c.user_id, device_id=c.device_id, what=what)

    async def nudge_blind_inbox(self) -> None:
        """Make the homeserver push what it holds for the appservice user's device: a no-op note to
        that device, sent by the appservice user itself. Its push carries everything pending for the
        device up to it (``_send_room_keys``), so an officer's room key the push skipped arrives after
        all. At most one note per ``NUDGE_EVERY`` seconds; best effort."""
        blind = self.puppets.get(self.blind_inbox_user) if self.blind_inbox_user else None
        now = time.monotonic()
        if blind is None or now - self._last_nudge < NUDGE_EVERY:
            return
        self._last_nudge = now
        try:
            await self.api.send(cs_api.send_to_device("m.room.encrypted", f"precinct.{next(_batches)}.nudge",
                                                      {blind.user_id: {blind.device_id: {FLUSH_NOTE: True}}}),
                                user_id=blind.user_id, device_id=blind.device_id, what="inbox nudge")
        except Exception as e:          # the bot's wait for the key goes on either way
            log.info("inbox nudge for %s not sent: %s", blind.user_id, e)

    async def _reshare_earlier_keys(self, c: PuppetClient, room_id: str, users: list[str]) -> None:
        """Send the original m.room_key of this puppet's earlier sessions in the room to these users' devices."""
        earlier = self.puppets.room_keys(c.user_id, room_id)[:-1]
        users = [u for u in users if self.may_hold_keys(u)]
        olm = c.olm
        if not earlier or not users or olm is None:
            return
        for content in earlier:
            messages: dict[str, dict[str, Any]] = {}
            for user in users:
                for device in olm.device_store.active_user_devices(user):
                    session = olm.session_store.get(device.curve25519)
                    if session is not None:
                        messages.setdefault(user, {})[device.id] = olm._olm_encrypt(
                            session, device, "m.room_key", content)
            if messages:
                await self._send_room_keys(c, messages, content["session_id"], "re-share room key")

    async def _ensure_room(self, c: PuppetClient, room_id: str) -> None:
        if room_id not in c.rooms or not c.rooms[room_id].members_synced:
            state = self._admitted(await self.api.room_state(c.user_id, room_id))
            await c.receive_response(_sync_response({"rooms": {"join": {room_id: {
                "timeline": {"events": [], "limited": False}, "state": {"events": state}}}, "invite": {}, "leave": {}}}))
            self._members_known(c, room_id)
            if c.olm and room_id in c.rooms:
                # A client loaded again heard no device-list changes while it was unloaded: ask afresh.
                c.olm.users_for_key_query.update(u for u in c.rooms[room_id].users if u != c.user_id)
        if c.should_query_keys:
            _check(await c.keys_query(), "keys query")

    def identity_keys(self, user_id: str) -> dict[str, str]:
        c = self.clients[user_id]
        assert c.olm
        return dict(c.olm.account.identity_keys)


@contextlib.contextmanager
def _one_commit(c: PuppetClient) -> Iterator[None]:
    """nio's writes to the device's store inside the block, committed together at its end.

    Decrypting an Olm message uses its message key up: nio writes the advanced Olm session (and, for a session's
    first message, the account without the one-time key it took) before what the message carried (a room key).
    Killed between those writes, the bridge could never decrypt the message again when it came a second time, and
    every message under that room key was lost (bench/kill_loop.py, tests/unit/test_olm_feed_killed.py). In one
    commit, a kill leaves the store as before the message, and the message handed over again is taken.
    Committed even when the block fails: the client in memory already holds what nio wrote."""
    database = getattr(c.store, "database", None)
    if database is None:
        yield
        return
    transaction = database.atomic()
    transaction.__enter__()
    try:
        yield
    finally:
        transaction.__exit__(None, None, None)


def _close_store(c: PuppetClient) -> None:
    """Close nio's SQLite store file between operations; peewee opens it again on the next query."""
    database = getattr(c.store, "database", None)
    if database is not None and not database.is_closed() and not database.in_transaction():
        database.close()


def _nothing_new(c: PuppetClient | None, otk: dict[str, int] | None) -> bool:
    """Whether a sync response carrying only these one-time-key counts would change nothing in the loaded
    client ``c`` (nio keeps only the signed_curve25519 count, and a zero not even that) and leave its upkeep
    nothing to do (no key upload, query or claim pending, no to-device message queued, no new device)."""
    if c is None or c.olm is None:
        return False
    count = (otk or {}).get("signed_curve25519")
    if count and count != c.olm.uploaded_key_count:
        return False
    return not (c.should_upload_keys or c.should_query_keys or c.should_claim_keys
                or c.outgoing_to_device_messages or c.new_devices)


def _devices_without_session(c: PuppetClient, room_id: str) -> bool:
    """Whether some member device has not been given the room's current outbound key."""
    olm, room = c.olm, c.rooms.get(room_id)
    session = olm.outbound_group_sessions.get(room_id) if olm else None
    if olm is None or room is None or session is None:
        return True
    have = session.users_shared_with | session.users_ignored
    return any((user, device.id) not in have for user in room.users
               for device in olm.device_store.active_user_devices(user) if device.id != c.device_id)


def _check(resp: Any, what: str) -> None:
    if isinstance(resp, nio.ErrorResponse):
        raise CryptoError(f"{what} failed: {resp.status_code} {resp.message}")


def encrypt_file(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Encrypt an attachment (AES-CTR); returns the ciphertext and the EncryptedFile fields but "url"."""
    ciphertext, info = encrypt_attachment(data)
    return ciphertext, info


def megolm_position(event: dict[str, Any]) -> tuple[str, int] | None:
    """(session ID, message index) of a Megolm event, read from its ciphertext's header, or None for anything
    else. The sender's client numbers the messages of a session 0, 1, 2 … in the order it encrypts them, so a
    number skipped in a room is a message of that session not received (yet), or a send that never happened.
    (The header is authenticated by the decryption, which uses the index it states.)"""
    content = event.get("content")
    if not isinstance(content, dict) or content.get("algorithm") != MEGOLM_ALGORITHM:
        return None
    session, ciphertext = content.get("session_id"), content.get("ciphertext")
    if not isinstance(session, str) or not isinstance(ciphertext, str):
        return None
    try:
        head = base64.b64decode(ciphertext[:24] + "=" * (-len(ciphertext[:24]) % 4))
    except (binascii.Error, ValueError):
        return None
    # Version 3, then field 1 (the index) as a varint: tag 0x08.
    if len(head) < 3 or head[0] != 3 or head[1] != 0x08:
        return None
    index, shift = 0, 0
    for byte in head[2:]:
        index |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return session, index
        shift += 7
    return None


def decrypt_file(ciphertext: bytes, info: dict[str, Any]) -> bytes:
    """Decrypt an attachment after checking its hash; raises CryptoError when it does not match."""
    try:
        return decrypt_attachment(ciphertext, info["key"]["k"], info["hashes"]["sha256"], info["iv"])
    except (KeyError, TypeError, ValueError, nio.EncryptionError) as e:
        raise CryptoError(f"attachment could not be decrypted: {e}")
