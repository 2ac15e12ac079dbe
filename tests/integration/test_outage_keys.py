"""Keys during an outage (issue 13): while the bridge is down an officer signs in on a new device and writes
from it, so the message comes under a room key the bridge has never seen, sent as a to-device message that
the homeserver does not repeat in catch-up transactions. After the restart the bridge fetches its puppets'
device inboxes (``Crypto.catch_up``) and the citizen gets the message; nothing is undecryptable and nobody
is asked to send it again."""
from __future__ import annotations

import uuid

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.integration.test_restart import Citizen


async def test_a_new_device_written_from_while_the_bridge_is_down_is_read_after_the_restart(
        matrix_env: MatrixEnv, officer_of, bridge_log):
    officer = await officer_of("central")
    citizen = Citizen(matrix_env.public_url)
    bridge = matrix_env.bridge
    try:
        got = await open_chat(citizen, officer)
        room = got.room_id

        bridge.stop()
        laptop = await officer_of("central", auto_claim=False)       # the same officer, signed in anew
        assert laptop.client.device_id != officer.client.device_id
        await laptop.wait_member(room, 60)
        text = f"from my new device while you were down {uuid.uuid4().hex[:6]}"
        await laptop.send(room, text)

        bridge.start()
        await citizen.reconnect()
        await citizen.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == text, 60,
                                 "the new device's message after the restart")
        await laptop.send(room, "and one more")
        await citizen.wait_frame(lambda f: f.get("body") == "and one more", 60, "the next one")
        bodies = [f["body"] for f in citizen.messages() if f["from"] == "officer"]
        assert bodies[-2:] == [text, "and one more"] and bodies.count(text) == 1
        for client in (officer, laptop):
            assert not any("send it again" in m.body for m in client.messages if m.room_id == room)
    finally:
        if bridge.pid is None:
            bridge.start()
        await citizen.close()
