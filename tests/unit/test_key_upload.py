"""A puppet's key upload cut short (the bridge killed before the homeserver's answer) is repeated with the very
same one-time keys after a restart (matrix/homeserver.py ``PuppetClient.keys_upload``). nio saved the keys only on
the answer, so the restarted puppet made new keys under the same IDs and the homeserver refused them for good."""
from __future__ import annotations

import nio
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.matrix.crypto import PuppetStore
from bridge.matrix.homeserver import PuppetClient

USER, DEVICE = "@webchat_k:localhost", "PRECINCTK"


async def nothing_to_flush() -> None:
    """No bridge store here."""


def puppet(url: str, store_dir) -> PuppetClient:
    config = nio.AsyncClientConfig(encryption_enabled=True, store=PuppetStore, store_name="k.db",
                                   pickle_key="pickle-key-0123456789")
    c = PuppetClient(url, USER, device_id=DEVICE, durable=nothing_to_flush, store_path=str(store_dir), config=config)
    c.restore_login(USER, DEVICE, "as-token")
    return c


async def test_an_upload_cut_short_is_repeated_with_the_same_one_time_keys(tmp_path):
    uploads: list[dict] = []

    async def upload(request: web.Request) -> web.Response:
        uploads.append(await request.json())
        if len(uploads) == 1:       # the homeserver took them, but the bridge never heard (killed, or a lost answer)
            return web.json_response({"errcode": "M_UNKNOWN", "error": "connection lost"}, status=502)
        return web.json_response({"one_time_key_counts": {"signed_curve25519": 50}})
    app = web.Application()
    app.router.add_post("/_matrix/client/v3/keys/upload", upload)
    server = TestServer(app)
    await server.start_server()
    try:
        first = puppet(str(server.make_url("")), tmp_path)
        assert first.should_upload_keys
        assert isinstance(await first.keys_upload(), nio.KeysUploadError)
        await first.close()
        again = puppet(str(server.make_url("")), tmp_path)          # the restarted bridge loads it from its store
        assert isinstance(await again.keys_upload(), nio.KeysUploadResponse)
        await again.close()
        one_time = [u.get("one_time_keys") for u in uploads]
        # Every key of the first upload again, unchanged (the homeserver takes a repeat; a new key under an
        # ID it already holds it refuses for good); more may come with them.
        assert one_time[0] and all(one_time[1].get(key_id) == key for key_id, key in one_time[0].items())
    finally:
        await server.close()
