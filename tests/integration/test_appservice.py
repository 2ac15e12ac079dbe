"""The appservice API as the homeserver sees it: authentication, replays, malformed input."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid

import aiohttp
import yaml

from tests.conftest import MatrixEnv
from tests.support.bridge_db import room_of
from tests.support.visitor import Visitor
from tests.support.waiting import until


def _as_base(env: MatrixEnv) -> str:
    return env.config["appservice"]["url"]


def _hs_token(env: MatrixEnv) -> str:
    return yaml.safe_load(env.registration_path.read_text())["hs_token"]


def _event(room_id: str, body: str, sender: str = "@officer1:localhost") -> dict:
    return {"event_id": f"${uuid.uuid4().hex}", "room_id": room_id, "type": "m.room.message", "sender": sender,
            "origin_server_ts": int(time.time() * 1000), "content": {"msgtype": "m.text", "body": body}}


async def _put(session: aiohttp.ClientSession, env: MatrixEnv, txn: str, body, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with session.put(f"{_as_base(env)}/_matrix/app/v1/transactions/{txn}", data=data, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_wrong_or_missing_hs_token_is_forbidden(matrix_env: MatrixEnv):
    async with aiohttp.ClientSession() as s:
        for token in (None, "wrong-token", _hs_token(matrix_env) + "x", ""):
            status, body = await _put(s, matrix_env, f"t-{uuid.uuid4().hex}", {"events": []}, token)
            assert status == 403 and body["errcode"] == "M_FORBIDDEN", (token, status, body)
        for method, path in (("GET", "/_matrix/app/v1/users/@webchat_x:localhost"),
                             ("GET", "/_matrix/app/v1/rooms/%23x:localhost"), ("POST", "/_matrix/app/v1/ping")):
            async with s.request(method, _as_base(matrix_env) + path, json={}) as r:
                assert r.status == 403 and (await r.json())["errcode"] == "M_FORBIDDEN"


async def test_queries_and_ping_follow_the_spec(matrix_env: MatrixEnv):
    auth = {"Authorization": f"Bearer {_hs_token(matrix_env)}"}
    base = _as_base(matrix_env)
    async with aiohttp.ClientSession(headers=auth) as s:
        async with s.get(base + "/_matrix/app/v1/users/@webchat_doesnotexist:localhost") as r:
            assert r.status == 404 and (await r.json())["errcode"] == "M_NOT_FOUND"
        async with s.get(base + "/_matrix/app/v1/rooms/%23anything:localhost") as r:
            assert r.status == 404 and (await r.json())["errcode"] == "M_NOT_FOUND"
        async with s.post(base + "/_matrix/app/v1/ping", json={"transaction_id": "x"}) as r:
            assert r.status == 200 and await r.json() == {}
        async with s.put(base + "/_matrix/app/v1/transactions/bad-json", data=b"{not json") as r:
            assert r.status == 400 and (await r.json())["errcode"] == "M_NOT_JSON"
        async with s.put(base + "/_matrix/app/v1/transactions/bad-shape", json={"events": "nope"}) as r:
            assert r.status == 400


async def test_replayed_transactions_and_events_do_not_duplicate_and_bad_events_do_not_block(matrix_env: MatrixEnv):
    visitor = Visitor(matrix_env.public_url)
    try:
        await visitor.create(topic="general")
        await visitor.connect()
        await visitor.send("hello")                       # a chat's room is made with its first message
        room_id = await room_of(matrix_env.dir / "precinct.db", visitor.chat_id)
        token = _hs_token(matrix_env)
        first = _event(room_id, "first from the homeserver")
        async with aiohttp.ClientSession() as s:
            txn = f"replay-{uuid.uuid4().hex}"
            assert (await _put(s, matrix_env, txn, {"events": [first]}, token))[0] == 200
            await visitor.wait_frame(lambda f: f.get("body") == first["content"]["body"], what="first event")
            # The same transaction again, and the same event in a new transaction: both no-ops.
            assert (await _put(s, matrix_env, txn, {"events": [first]}, token))[0] == 200
            assert (await _put(s, matrix_env, f"again-{uuid.uuid4().hex}", {"events": [first]}, token))[0] == 200
            # Malformed events inside a transaction are set aside; the good one after them arrives.
            good = _event(room_id, "after the bad ones")
            bad_content = _event(room_id, "x")
            bad_content["content"] = "not an object"
            bad_edit = _event(room_id, "x")
            bad_edit["content"] = {"msgtype": "m.text", "body": "* x", "m.relates_to": {"rel_type": "m.replace"}}
            not_megolm = _event(room_id, "x")
            not_megolm.update(type="m.room.encrypted", content={"algorithm": "m.olm.v1.curve25519-aes-sha2",
                                                                "sender_key": "k", "ciphertext": {}})
            bad_megolm = _event(room_id, "x")
            bad_megolm.update(type="m.room.encrypted", content={"algorithm": "m.megolm.v1.aes-sha2", "sender_key": 1})
            events = ["not an event", {"type": "m.room.message"}, bad_content, bad_edit, not_megolm, bad_megolm, good]
            assert (await _put(s, matrix_env, f"bad-{uuid.uuid4().hex}", {"events": events}, token))[0] == 200
            await visitor.wait_frame(lambda f: f.get("body") == "after the bad ones", what="event after bad ones")
            with sqlite3.connect(matrix_env.dir / "precinct.db") as db:
                set_aside = dict(db.execute("SELECT event_id, state || ': ' || error FROM room_events WHERE event_id"
                                            " IN (?, ?)", [not_megolm["event_id"], bad_megolm["event_id"]]))
            assert set_aside == {e["event_id"]: "failed: CryptoError: not a Megolm event: " + e["event_id"]
                                 for e in (not_megolm, bad_megolm)}, set_aside
            # A later transaction still flows.
            last = _event(room_id, "and the next transaction")
            assert (await _put(s, matrix_env, f"next-{uuid.uuid4().hex}", {"events": [last]}, token))[0] == 200
            await visitor.wait_frame(lambda f: f.get("body") == "and the next transaction", what="next txn")
        bodies = [f["body"] for f in visitor.messages() if f["from"] == "officer"]
        assert bodies == ["first from the homeserver", "after the bad ones", "and the next transaction"]
        # Replay after reconnect gives the same, once each.
        again = Visitor(matrix_env.public_url)
        again.chat_id, again.token, again.ws_url = visitor.chat_id, visitor.token, visitor.ws_url
        await again.connect(since=0)
        await until(lambda: len([f for f in again.messages() if f["from"] == "officer"]) == 3, 10, "replay")
        assert [f["body"] for f in again.messages() if f["from"] == "officer"] == bodies
        await again.close()
    finally:
        await visitor.close()


async def test_registration_from_generate_registration_is_accepted_by_synapse(matrix_env: MatrixEnv):
    """Synapse loaded our registration and reaches the bridge with it: its ping round trip succeeds.

    While Synapse is still retrying the transactions the bridge refused before it listened, a ping can get
    Synapse's own 502 "AlreadyCalled" or "AlreadyCancelled" (its recoverer's timer fired or was cancelled
    already; matrix-findings.md): only those answers are tried again, until the recovery is over."""
    reg = yaml.safe_load(matrix_env.registration_path.read_text())
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.post(f"{matrix_env.synapse.url}/_matrix/client/v1/appservice/{reg['id']}/ping",
                              json={"transaction_id": "test-ping"},
                              headers={"Authorization": f"Bearer {reg['as_token']}"}) as r:
                body = await r.json()
            recovering = r.status == 502 and any(race in str(body.get("error"))
                                                 for race in ("AlreadyCalled", "AlreadyCancelled"))
            if not recovering or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert r.status == 200, body
        assert isinstance(body.get("duration_ms"), int)


async def test_transactions_in_any_json_encoding_are_stored_so_they_read_back_the_same(matrix_env: MatrixEnv):
    """The bridge keeps a transaction's text as the homeserver sent it (UTF-8); JSON also allows a byte-order
    mark and UTF-16 or -32. Each is taken, reaches the citizen, and is stored in a form that parses back to the
    same transaction (what the pump reads after a restart)."""
    visitor = Visitor(matrix_env.public_url)
    try:
        await visitor.create(topic="general")
        await visitor.connect()
        await visitor.send("hello")
        room_id = await room_of(matrix_env.dir / "precinct.db", visitor.chat_id)
        token = _hs_token(matrix_env)
        sent: dict[str, tuple[bytes, dict]] = {}
        for name, encode in (("utf8", lambda t: t.encode()), ("escaped", lambda t: t.encode()),
                             ("bom", lambda t: b"\xef\xbb\xbf" + t.encode()), ("utf16", lambda t: t.encode("utf-16")),
                             ("utf32", lambda t: t.encode("utf-32-le"))):
            body = {"events": [_event(room_id, f"{name}: café ☎ 👮")]}
            text = json.dumps(body, ensure_ascii=(name == "escaped"))
            sent[f"enc-{name}-{uuid.uuid4().hex}"] = (encode(text), body)
        async with aiohttp.ClientSession() as s:
            for txn, (raw, body) in sent.items():
                assert (await _put(s, matrix_env, txn, raw, token))[0] == 200, txn
                await visitor.wait_frame(lambda f: f.get("body") == body["events"][0]["content"]["body"], what=txn)
        with sqlite3.connect(matrix_env.dir / "precinct.db") as db:
            for txn, (raw, body) in sent.items():
                [(stored,)] = db.execute("SELECT body FROM as_transactions WHERE txn_id LIKE ?", [txn + "#%"])
                assert json.loads(stored) == body, txn
                if txn.startswith(("enc-utf8", "enc-escaped")):
                    assert stored.encode() == raw                  # as it came
    finally:
        await visitor.close()
