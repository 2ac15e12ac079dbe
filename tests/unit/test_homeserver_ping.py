"""The start-up ping (matrix/homeserver.py) is tried again when it fails: only a ping that succeeds makes
Synapse retry what it queued for the bridge at once instead of after its back-off (bench/kill_loop.py saw
one fail with 502 M_CONNECTION_FAILED just after a restart, and the backlog came 12 s late)."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.matrix.homeserver import HomeserverApi, MatrixError

PATH = "/_matrix/client/v1/appservice/precinct/ping"


async def nothing_to_flush() -> None:
    """No store here: nothing the ping could have to wait for."""


async def homeserver(failures: int) -> tuple[TestServer, list[dict]]:
    """A homeserver whose first ``failures`` pings fail as Synapse's did; the requests it got."""
    asked: list[dict] = []

    async def ping(request: web.Request) -> web.Response:
        asked.append(await request.json())
        if len(asked) <= failures:
            return web.json_response({"errcode": "M_CONNECTION_FAILED", "error": "AlreadyCalled"}, status=502)
        return web.json_response({"duration_ms": 3})
    app = web.Application()
    app.router.add_post(PATH, ping)
    server = TestServer(app)
    await server.start_server()
    return server, asked


async def test_a_failed_ping_is_sent_again_until_the_homeserver_takes_it():
    server, asked = await homeserver(failures=2)
    api = HomeserverApi(str(server.make_url("")), "as-token", "precinct", durable=nothing_to_flush)
    await api.start()
    try:
        assert await api.ping(again_after=(0.01, 0.01, 0.01)) == {"duration_ms": 3}
        assert len(asked) == 3 and all(a == {"transaction_id": "precinct-startup"} for a in asked)
    finally:
        await api.close()
        await server.close()


async def test_a_ping_that_keeps_failing_gives_up_after_the_last_try():
    server, asked = await homeserver(failures=10)
    api = HomeserverApi(str(server.make_url("")), "as-token", "precinct", durable=nothing_to_flush)
    await api.start()
    try:
        with pytest.raises(MatrixError) as failed:
            await api.ping(again_after=(0.01, 0.01))
        assert failed.value.status == 502 and len(asked) == 3
    finally:
        await api.close()
        await server.close()
