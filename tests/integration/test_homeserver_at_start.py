"""The bridge starts before its homeserver (issue 13, "homeserver unreachable at start").

It used to wait a minute for the homeserver before listening at all, then exit: the page was not served
meanwhile and the bridge was gone if the homeserver took longer. Now it listens at once; citizens open chats
and write (acknowledged: stored on disk), ``/health`` answers 503 ``homeserver_unreachable``, and once the
homeserver comes the chats are set up and everything is delivered. Its own Synapse and bridge (this test
starts the bridge first), both stopped by PID.
"""
from __future__ import annotations

import subprocess
import sys

import aiohttp
import yaml

from bridge.devtools.localhs import LocalSynapse, free_port
from tests.conftest import OFFICERS, PASSWORD, ROOT, SERVER, write_bridge_config
from tests.support.bridge_db import dispatch_room_of
from tests.support.bridge_process import BridgeProcess
from tests.support.officer import OfficerPool
from tests.support.visitor import Visitor
from tests.support.waiting import until

async def _health(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/health") as r:
            return r.status, await r.json()


async def test_citizens_are_served_before_the_homeserver_comes_and_delivered_after(tmp_path):
    hs_port = free_port()
    config_path, _ = write_bridge_config(tmp_path, f"http://127.0.0.1:{hs_port}")
    registration = tmp_path / "registration.yaml"
    subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(config_path),
                    "-o", str(registration)], check=True, cwd=ROOT, capture_output=True, timeout=120)
    config = yaml.safe_load(config_path.read_text())
    url = config["web"]["public_url"]
    synapse = LocalSynapse(tmp_path / "synapse", SERVER, hs_port, [registration])
    bridge = BridgeProcess(config_path, url, tmp_path / "bridge.log")
    pool = OfficerPool(tmp_path / "officers", PASSWORD)
    visitor = Visitor(url)
    try:
        synapse.start()                                # once, before the bridge ever ran: the officer's account
        synapse.register_user(OFFICERS["central"], PASSWORD)
        synapse.stop()
        bridge.start(ready=False)                      # no homeserver: the bridge answers all the same
        assert await _health(url) == (503, {"status": "homeserver_unreachable"})
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/chat") as r:
                assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        number = (await visitor.create(topic="general", display_name="Early citizen"))["number"]
        await visitor.connect()
        before = ["I'm writing before the police's server is up", "and a second line"]
        for body in before:
            assert (await visitor.send(body))["type"] == "ack"    # stored on disk, acknowledged
        assert await _health(url) == (503, {"status": "homeserver_unreachable"})
        late = "written later, still before the homeserver"
        assert (await visitor.send(late))["type"] == "ack"
        assert bridge.pid is not None, bridge.tail()

        synapse.start()

        async def ready() -> bool:
            return (await _health(url))[0] == 200
        await until(ready, 120, "/health ok once the homeserver answers")
        officer = await pool.start(synapse.url, f"@{OFFICERS['central']}:{SERVER}", "officer-central",
                                   auto_claim=False)
        # Its device is newer than the dispatch notice (encrypted for nobody yet): the officer claims by number.
        await officer.claim(await dispatch_room_of(tmp_path / "precinct.db", "central"), number)
        for body in [*before, late]:
            await officer.wait_message(lambda m: m.body == body, 120, f"{body!r} at the officer")
        room = next(m.room_id for m in officer.messages if m.body == late)
        got = [m.body for m in officer.messages if m.room_id == room and m.body in (*before, late)]
        assert got == [*before, late], got              # each once, in the order written
        reply = "Thanks, we have it all now."
        await officer.send(room, reply)
        await visitor.wait_frame(lambda f: f.get("body") == reply, 60, "the officer's reply")
    finally:
        await visitor.close()
        await pool.stop_all()
        bridge.stop()
        synapse.stop()
