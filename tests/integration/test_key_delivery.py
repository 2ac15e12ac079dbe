"""Room keys that the homeserver's appservice push skips are recovered from the device inbox.

Synapse 1.163 can skip to-device messages in appservice transactions when several are
sent at once to different puppets (seen in bench/latency.py: an officer sharing keys with ten
chat rooms at once). The messages stay in each device's inbox, and the bridge must fetch
them rather than leave the officer's messages undecryptable.
"""
from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from typing import Awaitable, Callable

import aiohttp
import yaml
from aiohttp import web

from bridge.devtools.localhs import free_port
from tests.conftest import PASSWORD, MatrixEnv
from tests.support.bridge_process import BridgeProcess
from tests.support.visitor import Visitor

TO_DEVICE_KEYS = ("de.sorunome.msc2409.to_device", "to_device")     # the unstable and the stable name


async def test_officer_keys_shared_to_many_chats_at_once_all_arrive(matrix_env: MatrixEnv, officer_of, bridge_log):
    """The load under which Synapse was seen to skip; whether it skips in a given run is up to chance, so this
    checks the outcome only. The recovery itself is shown by the next test, which makes the skip happen."""
    officer = await officer_of("central")
    visitors = [Visitor(matrix_env.public_url) for _ in range(10)]
    try:
        await asyncio.gather(*(v.create(topic="general") for v in visitors))
        await asyncio.gather(*(v.connect() for v in visitors))
        markers = [f"parallel {i} {uuid.uuid4().hex[:6]}" for i in range(len(visitors))]
        await asyncio.gather(*(v.send(m) for v, m in zip(visitors, markers)))
        rooms = [(await officer.wait_message(lambda msg, m=m: msg.body == m, 90)).room_id for m in markers]
        # The officer's first message in every room at once: ten room keys to ten puppets in parallel.
        replies = [f"reply {i} {uuid.uuid4().hex[:6]}" for i in range(len(visitors))]
        await asyncio.gather(*(officer.send(r, t) for r, t in zip(rooms, replies)))
        for v, text in zip(visitors, replies):
            await v.wait_frame(lambda f, t=text: f.get("body") == t, 60, f"officer reply {text!r} at the citizen")
        # Recovered quietly: nobody was asked in a chat room to send anything again. (The bot in the dispatch
        # room may ask for a !claim again: it cannot fetch its own inbox, and the officer then resends.)
        assert not any("send it again" in m.body for m in officer.messages if m.room_id in rooms)
    finally:
        await asyncio.gather(*(v.close() for v in visitors))


async def test_officer_signing_in_on_a_new_device_after_the_invite_can_read_the_chat(matrix_env: MatrixEnv,
                                                                                      officer_of, bridge_log):
    """The invite goes out before the officer's new device exists; joining must still bring it the key."""
    from tests.support.bridge_db import dispatch_room_of, room_of
    from tests.support.waiting import until

    visitor = Visitor(matrix_env.public_url)
    try:
        created = await visitor.create(topic="night")
        await visitor.connect()
        marker = f"before the officer's device existed {uuid.uuid4().hex[:6]}"
        await visitor.send(marker)                      # a chat's room is made with its first message
        room_id = await room_of(matrix_env.db_path, visitor.chat_id)
        # The officer claims on one device, which does not take up the invite ...
        claimer = await officer_of("nightshift", auto_claim=False)
        claimer.auto_join = lambda room: room != room_id
        await claimer.claim(await dispatch_room_of(matrix_env.db_path, "nightshift"), created["number"])
        await until(lambda: room_id in claimer.client.invited_rooms, 60, "the officer's invite")
        officer = await officer_of("nightshift", auto_claim=False)   # ... and joins from a device made now
        await officer.wait_joined(room_id, 60)
        later = f"after the join {uuid.uuid4().hex[:6]}"
        await visitor.send(later)
        try:
            got = await officer.wait_message(lambda m: m.body == later, 30, "message after the join")
        except AssertionError:
            raise AssertionError(f"officer {officer.client.device_id} undecryptable: "
                                 f"{[(e.session_id, e.room_id == room_id) for e in officer.undecryptable]} "
                                 f"got: {[m.body for m in officer.messages]} visitor: {visitor.messages()}")
        assert got.room_id == room_id
    finally:
        await visitor.close()


def behind_a_push(matrix_env: MatrixEnv,
                  push: Callable[[int, int], "SkippingPush"]) -> tuple[BridgeProcess, "SkippingPush"]:
    """A second bridge process like the session's (its tokens, its store), listening on a port of its own, and
    ``push(as_port, that_port)`` standing on the appservice port the homeserver pushes to. Neither is started;
    the caller stops the session's bridge first and starts it again last."""
    behind_port = free_port()
    config = yaml.safe_load(matrix_env.config_path.read_text())          # with the tokens the bridge was given
    config["appservice"]["port"] = behind_port
    config_path = matrix_env.config_path.parent / f"config-behind-push-{behind_port}.yaml"
    config_path.touch(mode=0o600)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return (BridgeProcess(config_path, matrix_env.public_url, matrix_env.bridge.log_path),
            push(int(matrix_env.config["appservice"]["port"]), behind_port))


class SkippingPush:
    """Stands between Synapse and the bridge's appservice port and drops the encrypted to-device messages (room
    keys travel in them) of one transaction addressed to chosen users, as Synapse's push does by accident (bench/README.md): a real skip,
    made to happen on purpose, so that the recovery path certainly runs.

    Everything else (transactions, pings, user and room queries) is passed on unchanged.
    """

    def __init__(self, listen_port: int, bridge_port: int,
                 lose: Callable[[dict], Awaitable[None]] | None = None) -> None:
        """``lose``: also take each dropped message out of its device's inbox (awaited before the transaction is
        passed on), so that the bridge finds it nowhere: a room key lost on the way."""
        self.listen_port, self.bridge_port = listen_port, bridge_port
        self.lose = lose
        self.drop_for: set[str] = set()          # while not empty: drop to-device messages to these users
        self.dropped: list[dict] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._pass_on)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.listen_port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    async def _pass_on(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "PUT" and "/transactions/" in request.path and self.drop_for:
            txn = json.loads(body)
            for key in TO_DEVICE_KEYS:
                kept = []
                for message in txn.get(key) or []:
                    skip = message.get("to_user_id") in self.drop_for and message.get("type") == "m.room.encrypted"
                    (self.dropped if skip else kept).append(message)
                if key in txn:
                    txn[key] = kept
            if self.dropped:
                self.drop_for = set()                # one skip, then the push is whole again
                for message in self.dropped if self.lose else ():
                    await self.lose(message)
            body = json.dumps(txn).encode()
        assert self._session
        async with self._session.request(request.method, f"http://127.0.0.1:{self.bridge_port}{request.path_qs}",
                                         data=body, headers={k: v for k, v in request.headers.items()
                                                             if k.lower() in ("authorization", "content-type")}
                                         ) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                content_type=answer.content_type)


async def test_an_officer_room_key_the_push_skips_is_fetched_from_the_puppet_inbox(matrix_env: MatrixEnv,
                                                                                    officer_of, bridge_log,
                                                                                    tmp_path):
    """The officer's first reply goes under a new room key, sent to the citizen's puppet as a to-device message;
    the push leaves that message out. The puppet fetches it from its inbox and the citizen gets the reply, once,
    without the officer being asked to send it again."""
    from tests.support.bridge_db import room_of, rows
    from tests.support.waiting import until

    bridge = matrix_env.bridge
    behind, push = behind_a_push(matrix_env, SkippingPush)
    officer = await officer_of("central")
    visitor = Visitor(matrix_env.public_url)
    bridge.stop()
    try:
        behind.start()
        await push.start()
        await visitor.create(topic="general")
        await visitor.connect()
        opening = f"hello {uuid.uuid4().hex[:6]}"
        await visitor.send(opening)
        room_id = (await officer.wait_message(lambda m: m.body == opening, 90, "the opening message")).room_id
        puppet = (await until(lambda: rows(matrix_env.db_path, "SELECT puppet FROM chats WHERE id = ?",
                                           [visitor.chat_id])[0][0], 30, "the chat's puppet"))
        assert await room_of(matrix_env.db_path, visitor.chat_id) == room_id
        push.drop_for = {puppet}
        reply = f"the first reply, under a new room key {uuid.uuid4().hex[:6]}"
        await officer.send(room_id, reply)
        await visitor.wait_frame(lambda f: f.get("body") == reply, 90, "the officer's reply at the citizen")
        # The skip really happened: the room key for the puppet was left out of the push ...
        assert push.dropped and all(m["sender"] == officer.client.user_id for m in push.dropped), push.dropped
        # ... and the bridge got it from the inbox: delivered once, nobody asked to resend.
        assert [f.get("body") for f in visitor.messages()].count(reply) == 1
        asked = [m.body for m in officer.messages if m.room_id == room_id and "send it again" in m.body]
        assert not asked, asked
    finally:
        await visitor.close()
        behind.stop()
        await push.stop()
        bridge.start()


async def test_a_room_key_lost_on_the_way_is_asked_of_the_officers_element_device(matrix_env: MatrixEnv,
                                                                                  bridge_log, tmp_path):
    """The officer's first reply goes under a new room key, sent to the citizen's puppet as a to-device message,
    and that message is lost: left out of the push and taken out of the puppet's inbox. The puppet asks the
    officer's devices for the key (m.room_key_request: nio does at once when its Olm session with that device is
    new, as here; the bridge itself after 5 s otherwise); the officer's Element (matrix-js-sdk + Rust crypto)
    forwards it, as it does for a device it once gave the session to, the bridge takes it (nio alone would refuse
    a key forwarded by another user), and the citizen gets the reply once, without the officer being asked to send
    anything again. The record names the officer's device, as for any reply."""
    from tests.interop.officer_client import JsOfficer, prerequisites_missing
    from tests.support.bridge_db import dispatch_room_of, record_of, room_of, rows

    missing = prerequisites_missing()
    assert missing is None, missing

    async def lose(message: dict) -> None:
        """Taken out of the homeserver's device inbox: Synapse's own table, as no API deletes one message (a
        to-device-only sync as the device, then one with its next_batch, left it there, seen on Synapse 1.163)."""
        with sqlite3.connect(matrix_env.synapse.data_dir / "homeserver.db", timeout=30) as db:
            gone = db.execute("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ?",
                              [message["to_user_id"], message["to_device_id"]]).rowcount
        assert gone >= 1, "the room key was not in the puppet's inbox"

    bridge = matrix_env.bridge
    behind, push = behind_a_push(matrix_env, lambda as_port, behind_port: SkippingPush(as_port, behind_port, lose))
    officer_log = tmp_path / "element-officer.log"
    officer = JsOfficer(matrix_env.synapse.url, matrix_env.officer_id("interop"), PASSWORD, stderr_path=officer_log)
    visitor = Visitor(matrix_env.public_url)
    bridge.stop()
    try:
        behind.start()
        await push.start()
        await officer.start()
        dispatch = await dispatch_room_of(matrix_env.db_path, "interop")
        await officer.wait_for(lambda e: e["event"] == "joined" and e["room_id"] == dispatch, timeout=90)
        created = await visitor.create(topic="interop", display_name="Sam")
        await visitor.connect()
        await officer.send(dispatch, f"!claim {created['number']}")
        room_id = await room_of(matrix_env.db_path, visitor.chat_id)
        await officer.wait_for(lambda e: e["event"] == "joined" and e["room_id"] == room_id, timeout=90)
        opening = f"my bike is gone {uuid.uuid4().hex[:6]}"
        await visitor.send(opening)
        await officer.wait_for(lambda e: e["event"] == "message" and e.get("body") == opening, timeout=90)
        puppet = rows(matrix_env.db_path, "SELECT puppet FROM chats WHERE id = ?", [visitor.chat_id])[0][0]
        push.drop_for = {puppet}
        reply = f"the first reply, its room key lost {uuid.uuid4().hex[:6]}"
        await officer.send(room_id, reply)
        await visitor.wait_frame(lambda f: f.get("body") == reply, 90, "the officer's reply at the citizen")
        # The loss really happened: the room key for the puppet was left out of the push (and out of its inbox) ...
        assert push.dropped and all(m["sender"] == officer.user_id for m in push.dropped), push.dropped
        # ... so it came back as the answer to the puppet's request: Element's crypto says it served it (Rust
        # crypto's log) ...
        served = re.findall(r'Serving a room key request\n(?:[ \t]+[^\n]*\n)*?[ \t]+in \S*handle_supported_key_request '
                            r'with user_id="([^"]+)"', officer_log.read_text())
        assert puppet in served, (served, officer.stderr_tail(40))
        # ... delivered once, and nobody was asked to resend.
        assert [f.get("body") for f in visitor.messages()].count(reply) == 1
        notices = [e.get("body") for e in officer.events if e["event"] == "message" and e.get("room_id") == room_id
                   and "send it again" in (e.get("body") or "")]
        assert not notices, notices
        said = next(e for e in record_of(matrix_env.db_path, visitor.chat_id)
                    if e["kind"] == "message.officer" and (e["content"] or {}).get("body") == reply)
        assert said["actor"] == officer.user_id and said["details"]["device"] == officer.device_id
    finally:
        await visitor.close()
        await officer.stop()
        behind.stop()
        await push.stop()
        bridge.start()
