"""A citizen and an officer talk through the real bridge and a real Synapse, end-to-end encrypted."""
from __future__ import annotations

import uuid

import nio
import pytest

from tests.conftest import PASSWORD, MatrixEnv
from tests.support.officer import NioOfficer
from tests.support.visitor import Visitor
from tests.support.waiting import until


@pytest.fixture
async def officer(matrix_env: MatrixEnv, tmp_path):
    o = NioOfficer(matrix_env.synapse.url, matrix_env.officer_id("central"), PASSWORD, tmp_path / "officer")
    await o.start()
    yield o
    await o.stop()


@pytest.fixture
async def visitor(matrix_env: MatrixEnv):
    v = Visitor(matrix_env.public_url)
    yield v
    await v.close()


async def test_visitor_message_reaches_officer_from_puppet_device(matrix_env, officer, visitor, bridge_log):
    await visitor.create(topic="lost-property", display_name="Sam")
    await visitor.connect()
    marker = f"I lost my wallet {uuid.uuid4().hex[:8]}"
    ack = await visitor.send(marker)
    assert ack["seq"] >= 1

    got = await officer.wait_message(lambda m: m.body == marker, timeout=60, what="visitor message at officer")
    room = officer.client.rooms[got.room_id]
    assert room.encrypted
    assert room.display_name.startswith("Chat ") and "Lost property" in room.display_name
    # The message was encrypted (decrypted by the officer's own crypto) by a device of the puppet user.
    assert got.source.get("type") == "m.room.message"
    puppet = got.sender
    assert puppet.startswith("@webchat_") and puppet.endswith(":localhost")
    devices = list(officer.client.device_store.active_user_devices(puppet))
    assert len(devices) == 1, "each visitor puppet has exactly one device of its own"
    assert got.sender_key == devices[0].curve25519, "message not encrypted by the puppet's own device"
    assert devices[0].id.startswith("PRECINCT")
    bot = "@precinct:localhost"
    assert not any(d.curve25519 == got.sender_key for d in officer.client.device_store.active_user_devices(bot))


async def test_officer_reply_edit_and_redaction_reach_visitor_in_order(matrix_env, officer, visitor, bridge_log):
    await visitor.create(topic="general")
    await visitor.connect()
    marker = f"hello {uuid.uuid4().hex[:8]}"
    await visitor.send(marker)
    got = await officer.wait_message(lambda m: m.body == marker, timeout=60)
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active",
                             what="active status after officer join")

    first = await officer.send(got.room_id, "Hello, this is Officer One.")
    second = await officer.send(got.room_id, "Formatted", format="org.matrix.custom.html",
                                formatted_body="<p>Please <b>bring</b> ID</p><script>alert(1)</script>")
    await officer.send(got.room_id, "checks the records", msgtype="m.emote")
    await officer.edit(got.room_id, first, "Hello, this is Officer One of Central.")
    await officer.redact(got.room_id, second)

    def officer_frames():
        return [f for f in visitor.messages() if f["from"] == "officer"]
    await until(lambda: len(officer_frames()) >= 5, 60, "five officer frames")
    frames = officer_frames()
    assert [f["kind"] for f in frames] == ["text", "text", "emote", "edit", "redaction"]
    assert frames[0]["body"] == "Hello, this is Officer One."
    assert frames[1]["body"] == "Please bring ID"
    assert frames[3]["body"] == "Hello, this is Officer One of Central." and frames[3]["target"] == frames[0]["seq"]
    assert frames[4]["target"] == frames[1]["seq"]
    seqs = [f["seq"] for f in visitor.messages()]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    joined = [f for f in visitor.messages() if f["from"] == "system" and "joined" in f["body"]]
    assert joined and joined[0]["seq"] < frames[0]["seq"]
