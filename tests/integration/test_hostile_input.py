"""Issue 10's hostile inputs, each against the real bridge: a clear 4xx (or an `error` frame), nothing stored,
the socket open, and nothing for the bridge's last-resort handlers (no traceback in its log)."""
from __future__ import annotations

import uuid

import aiohttp
import pytest

from tests.conftest import MatrixEnv
from tests.support.bridge_db import rows
from tests.integration.test_appservice import _as_base, _hs_token
from tests.support.visitor import Visitor

NESTED = "[" * 60_000                       # 60 KB of nesting: json.loads raises RecursionError
HUGE = "99999999999999999999999"
LOG_ALARMS = ("Traceback", "unexpected error", "console error on")


def _error(body, code: str) -> bool:
    return isinstance(body, dict) and body.get("error") == code and isinstance(body.get("message"), str) \
        and body["message"] and "Traceback" not in body["message"]


def _rows(env: MatrixEnv, sql: str, args: list) -> list[tuple]:
    return rows(env.db_path, sql, args)


def _chat_count(env: MatrixEnv) -> int:
    return _rows(env, "SELECT COUNT(*) FROM chats", [])[0][0]


def _visitor_messages(env: MatrixEnv, chat_id: str) -> int:
    return _rows(env, "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND sender_kind = 'visitor'", [chat_id])[0][0]


@pytest.fixture
def quiet_log(matrix_env: MatrixEnv):
    """After the test: the bridge logged no traceback and used no last-resort handler meanwhile."""
    log = matrix_env.dir / "bridge.log"
    start = log.stat().st_size
    yield
    with log.open("rb") as f:
        f.seek(start)
        new = f.read().decode("utf-8", "replace")
    assert not [a for a in LOG_ALARMS if a in new], new[-4000:]


@pytest.fixture
async def visitor(visitors):
    v = visitors()
    await v.create(topic="general")
    return v


async def _chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("size", [400 * 1024, 8 * 1024 * 1024])   # under and over the listener's attachment cap
async def test_a_chunked_json_body_over_64_kib_is_refused_and_opens_no_chat(matrix_env: MatrixEnv, size: int,
                                                                            quiet_log):
    before = _chat_count(matrix_env)

    async def body():
        yield b'{"topic": "general", "display_name": "Alex", "padding": "'
        async for chunk in _chunks(size):
            yield chunk
        yield b'"}'
    async with aiohttp.ClientSession() as s:
        async with s.post(matrix_env.public_url + "/api/v1/chats", data=body()) as r:
            assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in r.request_info.headers
            assert r.status == 413 and _error(await r.json(), "too_large")
    assert _chat_count(matrix_env) == before


async def test_numbers_in_query_and_path_are_ascii_digits_below_2_63(matrix_env: MatrixEnv, visitor: Visitor,
                                                                     quiet_log):
    path = f"/api/v1/chats/{visitor.chat_id}"
    for since in ("²", "%C2%B2", "١", "１", HUGE, "9223372036854775808", "1e3", "0x1", "+1", "%00"):
        status, body = await visitor.http("GET", f"{path}/messages?since={since}")
        assert status == 400 and _error(body, "bad_request"), (since, status, body)
    status, body = await visitor.http("GET", f"{path}/messages?since=9223372036854775807")
    assert status == 200 and body["messages"] == []
    for seq in ("²", "%C2%B2", HUGE, "9223372036854775808", "-1", "1.5", "%ED%A0%80"):
        status, body = await visitor.http("GET", f"{path}/attachments/{seq}")
        assert status == 404 and _error(body, "not_found"), (seq, status, body)


async def test_malformed_and_deeply_nested_json_bodies_are_400(matrix_env: MatrixEnv, visitor: Visitor, quiet_log):
    chats_before = _chat_count(matrix_env)
    bodies = [NESTED.encode(), b"[" * 33 + b"]" * 33, b"NaN", b'{"display_name": Infinity}', b"1" * 5000,
              b'{"display_name": "\\ud800"}', b'{"topic": "general", "display_name": "\xed\xa0\x80"}', b"\xff\xfe",
              b'{"a": ' * 5000]
    async with aiohttp.ClientSession() as s:
        for data in bodies:
            async with s.post(matrix_env.public_url + "/api/v1/chats", data=data) as r:
                assert r.status == 400 and _error(await r.json(), "invalid_json"), (data[:40], r.status)
    assert _chat_count(matrix_env) == chats_before
    for data in bodies + [b'{"client_id": "\\udfff", "body": "lone surrogate in the id"}']:
        status, body = await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/messages", data=data)
        assert status == 400 and _error(body, "invalid_json"), (data[:40], status, body)
    status, body = await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/feedback",
                                      json={"rating": int(HUGE)})
    assert status == 400 and _error(body, "bad_request")
    assert _visitor_messages(matrix_env, visitor.chat_id) == 0


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(matrix_env: MatrixEnv, visitor: Visitor,
                                                                     quiet_log):
    await visitor.connect()
    frames = [NESTED, "[" * 33 + "]" * 33, "NaN", "1" * 5000, '{"type": "message", "client_id": "\\ud800", "body": "x"}',
              '{"type": "auth", "token": "x", "since": 99999999999999999999999}']
    for n, text in enumerate(frames):
        await visitor.ws.send_str(text)
        # a marker after each frame: its answer shows the frame before it was handled
        await visitor.ws.send_json({"type": "message", "client_id": f"marker-{n}", "body": ""})
        await visitor.wait_frame(lambda f: f.get("client_id") == f"marker-{n}", what=f"answer to marker {n}")
    errors = [f for f in visitor.frames if f.get("type") == "error" and not f.get("client_id", "").startswith("marker-")]
    assert [f["error"] for f in errors] == ["invalid_json"] * 5 + ["bad_frame"], errors
    assert not visitor.ws.closed
    await visitor.send("still here")
    assert _visitor_messages(matrix_env, visitor.chat_id) == 1


@pytest.mark.parametrize("first", [NESTED, "NaN", '{"type": "auth", "token": "\\ud800"}',
                                   '{"type": "auth", "token": "T", "since": "²"}',
                                   '{"type": "auth", "token": "T", "since": 99999999999999999999999}',
                                   '{"type": "auth", "token": "T", "since": -1}'])
async def test_a_bad_auth_frame_gets_an_error_frame_and_a_good_one_still_works(
        matrix_env: MatrixEnv, visitor: Visitor, first: str, quiet_log):
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(visitor.ws_url)
        await ws.send_str(first.replace('"T"', f'"{visitor.token}"'))
        error = await ws.receive_json(timeout=10)
        assert error["type"] == "error" and error["error"] in ("invalid_json", "bad_request"), error
        await ws.send_json({"type": "auth", "token": visitor.token, "since": 0})
        ready = await ws.receive_json(timeout=10)
        assert ready["type"] == "ready", ready
        await ws.close()


async def test_console_forms_refuse_bad_bodies_with_4xx(matrix_env: MatrixEnv, quiet_log):
    url = matrix_env.public_url + "/console/sign-in"
    async with aiohttp.ClientSession() as s:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for data, status in ((b"token=%ff%fe", 400), (b"token=\xff", 400),
                             (b"&".join(b"f%d=1" % i for i in range(500)), 400),
                             (_chunks(1024 * 1024), 413)):
            async with s.post(url, data=data, headers=form, allow_redirects=False) as r:
                assert r.status == status, (r.status, await r.text())
                assert "Traceback" not in await r.text()
        async with s.post(url, data=NESTED, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 415


async def test_appservice_refuses_bad_transactions_and_stores_none(matrix_env: MatrixEnv, quiet_log):
    headers = {"Authorization": f"Bearer {_hs_token(matrix_env)}"}
    cases = [(b"{not json", "M_NOT_JSON"), (b"\xff\xfe", "M_NOT_JSON"), (b"1" * 5000, "M_NOT_JSON"),
             (NESTED.encode(), "M_BAD_JSON"), (b'{"events": [' + b"[" * 50_000 + b"]}", "M_BAD_JSON"),
             (b'{"events": [], "x": NaN}', "M_BAD_JSON"), (b'{"events": [{"content": {"body": "\\ud800"}}]}',
                                                           "M_BAD_JSON"),
             (b"[]", "M_BAD_JSON"), (b'{"events": 5}', "M_BAD_JSON")]
    async with aiohttp.ClientSession() as s:
        for data, errcode in cases:
            txn = f"hostile-{uuid.uuid4().hex}"
            async with s.put(f"{_as_base(matrix_env)}/_matrix/app/v1/transactions/{txn}", data=data,
                             headers=headers) as r:
                body = await r.json()
                assert r.status == 400 and body["errcode"] == errcode, (data[:40], r.status, body)
            assert _rows(matrix_env, "SELECT COUNT(*) FROM as_transactions WHERE txn_id LIKE ?", [f"{txn}#%"]) \
                == [(0,)]
        txn = f"hostile-{uuid.uuid4().hex}"
        async with s.put(f"{_as_base(matrix_env)}/_matrix/app/v1/transactions/{txn}", headers=headers,
                         data=_chunks(65 * 1024 * 1024, 1024 * 1024)) as r:
            assert r.status == 413 and (await r.json())["errcode"] == "M_TOO_LARGE"
        assert _rows(matrix_env, "SELECT COUNT(*) FROM as_transactions WHERE txn_id LIKE ?", [f"{txn}#%"]) == [(0,)]


@pytest.mark.parametrize("name", ["Kim\u202eecilop", "Kim\u200b", "\u2066PC Demo\u2069", "Kim\ufeff", "Kim\x07"])
async def test_names_that_would_show_otherwise_are_refused_and_open_no_chat(matrix_env: MatrixEnv, name: str,
                                                                             quiet_log):
    """Issue 13's token and id abuse: a name with a bidirectional override, isolate, zero-width space, byte-order
    mark or control character would show to officers as something it is not ("Kim\u202eecilop" reads
    "Kimpolice"); refused with a clear 400 naming the character, nothing stored — for a chat and an offline
    message alike."""
    before = _chat_count(matrix_env)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{matrix_env.public_url}/api/v1/chats",
                             json={"topic": "general", "display_name": name}) as r:
            assert r.status == 400 and _error(await r.json(), "bad_request")
            assert "U+" in (await r.json())["message"]
        async with http.post(f"{matrix_env.public_url}/api/v1/offline_messages",
                             json={"topic": "after-hours", "message": "hello", "name": name}) as r:
            assert r.status == 400 and _error(await r.json(), "bad_request")
    assert _chat_count(matrix_env) == before


async def test_names_in_any_script_are_taken_with_the_joiners_they_need(matrix_env: MatrixEnv, visitors, quiet_log):
    """What the refusal above must not catch: Arabic (right-to-left by its letters, no control needed), a
    Persian name with its zero-width non-joiner, an emoji sequence with zero-width joiners."""
    for name in ("فاطمة", "محمد\u200cرضا", "Sam 👩\u200d🚒"):
        v = visitors()
        created = await v.create(topic="general", display_name=name)
        assert created["number"]
