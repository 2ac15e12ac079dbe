"""A puppet's key upload cut short (the bridge killed before the homeserver's answer) is repeated with the very
same one-time keys after a restart (matrix/homeserver.py ``PuppetClient.keys_upload``). nio saved the keys only on
the answer, so the restarted puppet made new keys under the same IDs and the homeserver refused them for good."""
from __future__ import annotations

import shutil

import nio
import vodozemac
from aiohttp import web
from aiohttp.test_utils import TestServer

from nio.api import Api

from bridge.matrix.crypto import PUPPET_ONE_TIME_KEYS, PuppetStore
from bridge.matrix.homeserver import PuppetClient

USER, DEVICE = "@webchat_k:localhost", "PRECINCTK"


async def nothing_to_flush() -> None:
    """No bridge store here."""


def puppet(url: str, store_dir, **kwargs) -> PuppetClient:
    config = nio.AsyncClientConfig(encryption_enabled=True, store=PuppetStore, store_name="k.db",
                                   pickle_key="pickle-key-0123456789")
    c = PuppetClient(url, USER, device_id=DEVICE, durable=nothing_to_flush, store_path=str(store_dir), config=config,
                     **kwargs)
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


async def test_a_device_restored_from_a_backup_skips_the_key_ids_it_made_after_it(tmp_path):
    """A puppet restored from a backup numbers its next one-time keys from where the backup left it; the homeserver
    may hold keys made after the backup under those IDs and refuses them for good, as Synapse does (the test of
    tests/integration/test_backup_restore.py saw 'One time key … already exists' after a restart following the
    backup). The restored device skips past them, and the keys from before the backup stay usable."""
    held: dict[str, dict] = {}         # key ID → key, as the homeserver keeps them
    uploads: list[set[str]] = []
    counts = {"signed_curve25519": 0}

    async def upload(request: web.Request) -> web.Response:
        body = await request.json()
        offered = body.get("one_time_keys") or {}
        uploads.append(set(offered))
        clash = [k for k, v in offered.items() if k in held and held[k] != v]
        if clash:
            return web.json_response({"errcode": "M_UNKNOWN", "error": f"One time key {clash[0]} already exists."},
                                     status=400)
        held.update(offered)
        counts["signed_curve25519"] = len(held)
        return web.json_response({"one_time_key_counts": {"signed_curve25519": len(held)}})
    app = web.Application()
    app.router.add_post("/_matrix/client/v3/keys/upload", upload)
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url(""))
    live, backup = tmp_path / "live", tmp_path / "backup"
    live.mkdir()
    try:
        first = puppet(url, live)
        assert isinstance(await first.keys_upload(), nio.KeysUploadResponse)       # 50 keys before the backup
        await first.close()
        shutil.copytree(live, backup)                                              # the backup
        after = puppet(url, live)
        after.olm.uploaded_key_count = 47                                          # three were handed out …
        assert isinstance(await after.keys_upload(), nio.KeysUploadResponse)       # … and made again
        made_after_backup = uploads[-1]
        await after.close()

        restored = puppet(url, backup)
        restored.olm.uploaded_key_count = 46                                       # one more handed out since
        assert isinstance(await restored.keys_upload(), nio.KeysUploadResponse)
        assert uploads[-2] & made_after_backup                                     # it clashed first …
        assert not uploads[-1] & set().union(*uploads[:-1])                        # … then used IDs never used
        # A key from before the backup that the homeserver still hands out still opens a session.
        from_before = next(iter(uploads[0]))
        officer = vodozemac.Account()
        session = officer.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(restored.olm.account.identity_keys["curve25519"]),
            vodozemac.Curve25519PublicKey.from_base64(held[from_before]["key"]))
        _, plain = restored.olm.account._account.create_inbound_session(
            officer.curve25519_key, session.encrypt(b"room key").to_pre_key())
        assert plain == b"room key"
        await restored.close()
    finally:
        await server.close()


async def test_a_puppet_keeps_ten_one_time_keys_published_and_publishes_more_only_below_five(tmp_path):
    """A puppet's one-time keys are taken by the few officer devices that send it a room key; nio published fifty
    and again after each one taken. Every key and the device keys are signed by the device, as the spec asks."""
    uploads: list[dict] = []
    held: set[str] = set()

    async def upload(request: web.Request) -> web.Response:
        body = await request.json()
        uploads.append(body)
        held.update(body.get("one_time_keys") or {})
        return web.json_response({"one_time_key_counts": {"signed_curve25519": len(held)}})
    app = web.Application()
    app.router.add_post("/_matrix/client/v3/keys/upload", upload)
    server = TestServer(app)
    await server.start_server()
    try:
        c = puppet(str(server.make_url("")), tmp_path, one_time_keys=PUPPET_ONE_TIME_KEYS)
        assert c.should_upload_keys
        assert isinstance(await c.keys_upload(), nio.KeysUploadResponse)
        first = uploads[0]
        assert len(first["one_time_keys"]) == 10 and c.olm.uploaded_key_count == 10
        ed25519 = vodozemac.Ed25519PublicKey.from_base64(c.olm.account.identity_keys["ed25519"])
        device_keys = first["device_keys"]
        assert device_keys["keys"] == {f"curve25519:{DEVICE}": c.olm.account.identity_keys["curve25519"],
                                       f"ed25519:{DEVICE}": c.olm.account.identity_keys["ed25519"]}
        assert set(device_keys["algorithms"]) == {"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"}
        for signed in [device_keys, *first["one_time_keys"].values()]:
            unsigned = {k: v for k, v in signed.items() if k != "signatures"}
            ed25519.verify_signature(Api.to_canonical_json(unsigned).encode(),
                                     vodozemac.Ed25519Signature.from_base64(signed["signatures"][USER][f"ed25519:{DEVICE}"]))
        for taken in list(held)[:5]:                 # officers' devices take five: five are left, none published
            held.discard(taken)
        c.olm.uploaded_key_count = len(held)
        assert not c.should_upload_keys
        held.discard(next(iter(held)))               # a sixth: four left, fewer than five
        c.olm.uploaded_key_count = len(held)
        assert c.should_upload_keys
        assert isinstance(await c.keys_upload(), nio.KeysUploadResponse)
        assert "device_keys" not in uploads[1] and len(uploads[1]["one_time_keys"]) == 6
        assert not set(uploads[1]["one_time_keys"]) & set(first["one_time_keys"])
        assert len(held) == 10 and c.olm.uploaded_key_count == 10 and not c.should_upload_keys
        await c.close()
    finally:
        await server.close()
