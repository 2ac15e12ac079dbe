"""Generated input against the real bridge (hypothesis): bodies, query values, path ids and WebSocket frames of
any JSON shape, and text that is not JSON. Whatever comes: never a 5xx, every refusal a JSON error, no dropped
socket after `ready`, nothing stored from a refused request, no traceback in the bridge's log.

Derandomized with no example database, so every run (and CI) tries the same inputs; bounded in examples."""
from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.conftest import MatrixEnv
from tests.support.bridge_db import rows
from tests.integration.test_hostile_input import quiet_log  # noqa: F401  (fixture)
from tests.support.visitor import Visitor

SETTINGS = dict(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))

# Values that broke, or nearly broke, the bridge: Unicode digits, numbers beyond SQLite, lone surrogates.
NASTY_TEXT = ["", " ", "0", "1", "-1", "²", "١٢", "１", "99999999999999999999999", "9223372036854775807",
              "9223372036854775808", "1e3", "0x10", "NaN", "\ud800", "\x00", "general", "../..", "%", "\n"]
NASTY_INT = [0, 1, 5, -1, 2 ** 63 - 1, 2 ** 63, 10 ** 30, -(10 ** 30)]

text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(st.characters(codec=None), max_size=12))
scalar = st.one_of(st.none(), st.booleans(), st.sampled_from(NASTY_INT), st.integers(), st.floats(), text)
any_json = st.recursive(scalar, lambda inner: st.lists(inner, max_size=4) |
                        st.dictionaries(text, inner, max_size=4), max_leaves=12)
# Objects with the fields the bridge reads, holding any value: some valid, most not.
fields = st.fixed_dictionaries({}, optional={k: any_json | text for k in (
    "client_id", "body", "topic", "display_name", "language", "consent", "rating", "comment", "message",
    "name", "contact", "type", "active", "since", "token")})


def _dumps(value: Any) -> str:
    return json.dumps(value)          # NaN and Infinity come out as the non-JSON words; lone surrogates as \ud800


def _nested(n: int) -> str:
    return "[" * n


json_text = st.one_of(any_json.map(_dumps), fields.map(_dumps), st.integers(1, 60_000).map(_nested),
                      st.text(max_size=40), st.sampled_from(["{", "[1,]", "{'a': 1}", "1" * 5000, "NaN"]))
body = st.one_of(json_text.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=64))
segment = text.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe=""))


def _rows(env: MatrixEnv, sql: str, args: list) -> list[tuple]:
    return rows(env.db_path, sql, args)


def _visitor_messages(env: MatrixEnv, chat_id: str) -> tuple[int, int]:
    """(count, last seq) of the citizen's messages in a chat."""
    n, last = _rows(env, "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM messages WHERE chat_id = ? "
                         "AND sender_kind = 'visitor'", [chat_id])[0]
    return n, last


def _chat_ids(env: MatrixEnv) -> set[str]:
    return {r[0] for r in _rows(env, "SELECT id FROM chats", [])}


@pytest.fixture
async def visitor(visitors):
    v = visitors()
    await v.create(topic="general")
    return v


def _requests(chat_id: str, token: str):
    """(method, path, token, body) for every visitor API route that takes input."""
    cid = st.one_of(st.just(chat_id), segment)
    tok = st.one_of(st.just(token), st.just(token), text)
    query = segment
    return st.one_of(
        st.tuples(st.just("GET"), st.builds(lambda c, q: f"/api/v1/chats/{c}/messages?since={q}", cid, query),
                  tok, st.none()),
        st.tuples(st.just("GET"), st.builds(lambda c, s: f"/api/v1/chats/{c}/attachments/{s}", cid, segment),
                  tok, st.none()),
        st.tuples(st.just("GET"), st.builds(lambda c, q: f"/api/v1/chats/{c}/transcript?format={q}", cid, query),
                  tok, st.none()),
        st.tuples(st.just("GET"), st.builds(lambda c: f"/api/v1/chats/{c}", cid), tok, st.none()),
        st.tuples(st.just("POST"), st.builds(lambda c: f"/api/v1/chats/{c}/messages", cid), tok, body),
        st.tuples(st.just("POST"), st.builds(lambda c: f"/api/v1/chats/{c}/feedback", cid), tok, body),
        st.tuples(st.just("POST"), st.builds(lambda c, q: f"/api/v1/chats/{c}/attachments?client_id={q}",
                                             cid, query), tok, body),
        st.tuples(st.just("POST"), st.just("/api/v1/chats"), st.none(), body),
        st.tuples(st.just("POST"), st.just("/api/v1/offline_messages"), st.none(), body),
    )


async def _is_json_error(r: aiohttp.ClientResponse) -> bool:
    text = await r.text()
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), str) and isinstance(data.get("message"), str) \
        and "Traceback" not in text


@pytest.fixture
async def opened(visitor: Visitor):
    """Chats a generated body happened to open (an empty object is a valid request): ended afterwards."""
    made: list[tuple[str, str]] = []
    yield made
    for chat_id, token in made:
        await visitor.http("POST", f"/api/v1/chats/{chat_id}/close", token=token, json={})


@pytest.fixture
async def connected(visitor: Visitor):
    await visitor.connect()
    yield visitor
    assert not visitor.ws.closed, "the socket was dropped after ready"


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
async def test_generated_http_requests_never_get_a_5xx_nor_store_anything_when_refused(
        matrix_env: MatrixEnv, visitor: Visitor, opened: list, quiet_log, data: st.DataObject):  # noqa: F811
    method, path, token, payload = data.draw(_requests(visitor.chat_id, visitor.token))
    chats_before, mine_before = _chat_ids(matrix_env), _visitor_messages(matrix_env, visitor.chat_id)
    headers = {"Authorization": f"Bearer {quote(token.encode('utf-8', 'surrogatepass'), safe='')}"} if token is not None else {}
    url = URL(matrix_env.public_url + path, encoded=True)
    async with visitor.session.request(method, url, data=payload, headers=headers) as r:
        status, ok_error = r.status, (r.status < 400 or await _is_json_error(r))
        created = await r.json() if (status == 201 and path == "/api/v1/chats") else None
    assert status < 500, (method, path, payload)
    assert ok_error, (method, path, status)
    if created is not None:
        opened.append((created["chat_id"], created["token"]))
        assert _chat_ids(matrix_env) - chats_before == {created["chat_id"]}
    else:
        assert _chat_ids(matrix_env) == chats_before, (method, path, status)
    stored = status == 201 and path == f"/api/v1/chats/{visitor.chat_id}/messages"
    mine_after = _visitor_messages(matrix_env, visitor.chat_id)
    assert (mine_after[0] - mine_before[0]) in ((0, 1) if stored else (0,)), (method, path, status, payload)


def _ws_frames() -> st.SearchStrategy:
    never_close = fields.map(lambda f: {**f, "type": "shut"} if f.get("type") == "close" else f)
    return st.one_of(json_text.filter(lambda t: '"close"' not in t), never_close.map(_dumps),
                     st.binary(max_size=32))


@settings(max_examples=150, **SETTINGS)
@given(frame=_ws_frames())
async def test_generated_frames_get_answers_and_the_socket_stays_open(
        matrix_env: MatrixEnv, connected: Visitor, quiet_log, frame: str | bytes):  # noqa: F811
    visitor = connected
    marker = f"marker-{uuid.uuid4().hex}"
    seen = len(visitor.frames)
    count_before, last_before = _visitor_messages(matrix_env, visitor.chat_id)
    if isinstance(frame, bytes):
        await visitor.ws.send_bytes(frame)
    else:
        await visitor.ws.send_str(frame)
    # Frames are handled in order: the answer to a marker after it shows the frame was handled.
    await visitor.ws.send_json({"type": "message", "client_id": marker, "body": " "})
    await visitor.wait_frame(lambda f: f.get("client_id") == marker, what=f"answer to {marker}")
    assert not visitor.ws.closed, frame
    answers = [f for f in visitor.frames[seen:] if f.get("client_id") != marker]
    for f in answers:
        if f.get("type") == "error":
            assert set(f) - {"client_id"} == {"type", "error", "message"} and f["error"] != "internal_error", f
    new_seqs = {f["seq"] for f in answers if f.get("type") == "ack" and f["seq"] > last_before}
    count_after, _ = _visitor_messages(matrix_env, visitor.chat_id)
    assert count_after - count_before == len(new_seqs), (frame, answers)


@settings(max_examples=40, **SETTINGS)
@given(frame=_ws_frames())
async def test_generated_first_frames_never_break_the_auth_phase(
        matrix_env: MatrixEnv, visitor: Visitor, quiet_log, frame: str | bytes):  # noqa: F811
    ws = await visitor.session.ws_connect(visitor.ws_url)
    try:
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        await ws.send_json({"type": "auth", "token": visitor.token, "since": 0})
        first = await ws.receive(timeout=30)
        assert first.type == aiohttp.WSMsgType.TEXT, (frame, first)
        answer = json.loads(first.data)
        if answer["type"] == "error":
            assert answer["error"] in ("invalid_json", "bad_frame", "bad_request", "unauthorized"), answer
            if answer["error"] == "unauthorized":          # it was an auth frame with a wrong token
                closing = await ws.receive(timeout=30)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == 4401
                return
            second = await ws.receive(timeout=30)
            assert second.type == aiohttp.WSMsgType.TEXT, (frame, second)
            answer = json.loads(second.data)
        assert answer["type"] == "ready", (frame, answer)
    finally:
        await ws.close()


PREFIXES = ["", "api/", "api/v1/", "api/v1/chats/", "api/v1/chats/x/", "static/", "static/js/", "console/",
            "console/chats/", "chat", "health", "branding/"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@settings(max_examples=100, **SETTINGS)
@given(method=st.sampled_from(METHODS), prefix=st.sampled_from(PREFIXES),
       segments=st.lists(segment, max_size=3), query=segment, payload=st.none() | body)
async def test_generated_paths_on_the_public_listener_never_get_a_5xx(
        matrix_env: MatrixEnv, visitor: Visitor, quiet_log, method: str, prefix: str,  # noqa: F811
        segments: list[str], query: str, payload: bytes | None):
    if prefix + "/".join(segments) in ("console/sign-in", "console/sign-out"):
        return                       # forms with their own tests; a generated sign-in is only an audited refusal
    url = URL(f"{matrix_env.public_url}/{prefix}{'/'.join(segments)}?q={query}&since={query}", encoded=True)
    async with visitor.session.request(method, url, data=payload, allow_redirects=False) as r:
        status, text = r.status, await r.text()
    assert status < 500, (method, str(url), status)
    assert "Traceback" not in text
    if status >= 400 and url.path.startswith("/api/") and method != "HEAD":
        assert _error_shape(text), (method, str(url), status, text[:200])


def _error_shape(text: str) -> bool:
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), str) and isinstance(data.get("message"), str)


@pytest.fixture
async def console(matrix_env: MatrixEnv):
    """A signed-in supervisor's session on the real console, and the CSRF token its pages carry."""
    import re
    from urllib.parse import parse_qs, urlsplit

    from tests.conftest import SERVER, SUPERVISOR
    from tests.integration.test_console_live import console_link
    result = console_link(matrix_env, f"@{SUPERVISOR}:{SERVER}")
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    token = parse_qs(urlsplit(link).query)["token"][0]
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        async with session.get(link) as r:              # the sign-in page sets its form's CSRF cookie
            sign_in_csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
        async with session.post(matrix_env.public_url + "/console/sign-in",
                                data={"token": token, "csrf": sign_in_csrf}, allow_redirects=False) as r:
            assert r.status == 303
        async with session.get(matrix_env.public_url + "/console/search") as r:
            found = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        yield session, found.group(1) if found else ""
    finally:
        await session.close()


@settings(max_examples=80, **SETTINGS)
@given(data=st.data())
async def test_generated_console_queries_and_forms_never_get_a_5xx(
        matrix_env: MatrixEnv, console, quiet_log, data: st.DataObject):  # noqa: F811
    session, csrf = console
    chat = data.draw(st.one_of(segment, st.just("no-such-chat")))
    q = {k: data.draw(segment) for k in ("q", "from", "to", "agency", "topic", "officer", "tag", "rating", "format")}
    query = "&".join(f"{k}={v}" for k, v in q.items())
    form = data.draw(st.one_of(
        st.binary(max_size=64),
        st.dictionaries(st.sampled_from(["csrf", "action", "reason", "x"]), text, max_size=4).map(
            lambda f: "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
                               for k, v in {"csrf": csrf, **f}.items()).encode())))
    method, path = data.draw(st.sampled_from([
        ("GET", f"/console/search?{query}"), ("GET", f"/console/reports?{query}"),
        ("GET", f"/console/reports.csv?{query}"), ("GET", f"/console/chats/{chat}?{query}"),
        ("GET", f"/console/chats/{chat}/export?{query}"), ("POST", f"/console/chats/{chat}/hold")]))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    url = URL(matrix_env.public_url + path, encoded=True)
    async with session.request(method, url, data=form if method == "POST" else None, headers=headers,
                               allow_redirects=False) as r:
        status, page = r.status, await r.text()
    route = path.split("?")[0].replace(f"/chats/{chat}", "/chats/{chat}") if chat else path.split("?")[0]
    event(f"{method} {route} → {status}")   # the spread, in --hypothesis-show-statistics
    assert status < 500, (method, path, status)
    assert "Traceback" not in page
