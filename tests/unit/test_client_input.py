"""bridge/client_input.py: bodies under a running cap, JSON we can store, whole numbers that fit SQLite."""
from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge import client_input
from bridge.client_input import BadJson, BadNumber, NotJson


@pytest.mark.parametrize("text", ["0", "1", "42", "9223372036854775807"])
def test_whole_numbers_in_text(text):
    assert client_input.whole_number(text, text=True) == int(text)


@pytest.mark.parametrize("text", ["", "²", "١٢", "１２", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10",
                                  "9223372036854775808", "99999999999999999999999", "1_000"])
def test_not_whole_numbers_in_text(text):
    with pytest.raises(BadNumber):
        client_input.whole_number(text, text=True)


@pytest.mark.parametrize("value", [True, False, None, 1.0, "5", -1, 2 ** 63, 10 ** 30, [1], {"n": 1}])
def test_only_json_integers_in_range_in_json(value):
    with pytest.raises(BadNumber):
        client_input.whole_number(value, text=False)
    assert client_input.whole_number(2 ** 63 - 1, text=False) == 2 ** 63 - 1


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe\x00", b"{'a': 1}", b"[1,]", b"1" * 5000, "x"])
def test_not_json(raw):
    with pytest.raises(NotJson):
        client_input.parse_json(raw)


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"[" * 60_000,
                                 b'{"a": "\\ud800"}', b'{"\\udfff": 1}', '["\udcff"]'.encode("utf-8", "surrogatepass"),
                                 b"[" * 33 + b"]" * 33, b'[{"a": ["\\uDBFF"]}]',
                                 '["\udc00"]'.encode("utf-16-le", "surrogatepass"),
                                 '["\ud800"]'.encode("utf-32", "surrogatepass")])
def test_json_we_refuse(raw):
    with pytest.raises(BadJson):
        client_input.parse_json(raw)


def test_json_we_take():
    assert client_input.parse_json(b"[" * 32 + b"]" * 32) is not None
    assert client_input.parse_json('{"a": "\\ud83d\\ude00 ²", "n": 99999999999999999999999}') == \
        {"a": "\U0001F600 ²", "n": 99999999999999999999999}
    deep = b"[" * 500 + b"]" * 500                    # the appservice endpoint takes any depth Python can parse
    assert client_input.parse_json(deep, max_depth=None) is not None


def test_forms():
    assert client_input.parse_form(b"a=1&b=&a=2&c=x+y%21") == {"a": "1", "b": "", "c": "x y!"}
    for bad in (b"a=%ff", b"\xff=1", b"&".join(b"f%d=1" % i for i in range(200))):
        with pytest.raises(client_input.BadForm):
            client_input.parse_form(bad)


async def test_body_cap_holds_for_chunked_bodies():
    async def echo(request: web.Request) -> web.Response:
        try:
            return web.Response(text=str(len(await client_input.read_body(request, 1000))))
        except client_input.BodyTooLarge:
            return web.Response(status=413)

    app = web.Application()
    app.router.add_post("/", echo)
    server = TestServer(app)
    await server.start_server()

    async def chunks(n: int):
        for _ in range(n):
            yield b"x" * 100

    try:
        async with aiohttp.ClientSession() as s:
            for n, expected in ((10, (200, "1000")), (11, (413, "")), (10_000, (413, ""))):
                async with s.post(server.make_url("/"), data=chunks(n)) as r:    # no Content-Length: chunked
                    assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
                    assert (r.status, await r.text()) == expected
            async with s.post(server.make_url("/"), data=b"x" * 1001) as r:     # refused from the header
                assert r.status == 413
    finally:
        await server.close()
