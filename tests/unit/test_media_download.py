"""The media download reads a response to its end under a running cap, whatever the transfer encoding
(``StreamReader.read(n)`` returns only what is buffered: files were cut, then failed their hash)."""
from __future__ import annotations

import os

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.matrix.homeserver import HomeserverApi, MatrixError, MediaTooLarge

FILE = os.urandom(700_000)


async def media(request: web.Request) -> web.StreamResponse:
    how = request.match_info["id"]
    if how == "missing":
        return web.Response(status=404, text="<html>not found</html>")    # not JSON: still a clear error
    response = web.StreamResponse()
    if how == "sized":
        response.content_length = len(FILE)
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    for at in range(0, len(FILE), 10_000):          # many small writes: the body arrives in pieces
        await response.write(FILE[at:at + 10_000])
    await response.write_eof()
    return response


async def _nothing_to_flush() -> None:
    """No store here: the requests wait for nothing."""


@pytest.fixture
async def api():
    app = web.Application()
    app.router.add_get("/_matrix/client/v1/media/download/{server}/{id}", media)
    server = TestServer(app)
    await server.start_server()
    hs = HomeserverApi(str(server.make_url("")), "as-token", "precinct", durable=_nothing_to_flush)
    await hs.start()
    yield hs
    await hs.close()
    await server.close()


@pytest.mark.parametrize("how", ["sized", "chunked"])
async def test_the_whole_file_or_too_large(api: HomeserverApi, how: str):
    assert await api.download("@p:hs", f"mxc://hs/{how}", len(FILE)) == FILE
    with pytest.raises(MediaTooLarge):
        await api.download("@p:hs", f"mxc://hs/{how}", len(FILE) - 1)


async def test_an_error_page_is_a_matrix_error(api: HomeserverApi):
    with pytest.raises(MatrixError) as e:
        await api.download("@p:hs", "mxc://hs/missing", 1000)
    assert e.value.status == 404
