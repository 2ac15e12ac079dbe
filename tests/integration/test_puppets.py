"""Puppets under a burst of new chats: each gets its own device, signed by its own cross-signing key."""
from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
import nio
import yaml

from bridge.matrix.crosssign import verify_json
from tests.conftest import PASSWORD, MatrixEnv
from tests.support.bridge_db import room_of
from tests.support.visitor import Visitor


def homeserver_inbox(matrix_env: MatrixEnv, user_id: str) -> int:
    """How many to-device messages Synapse holds for the user's devices (its own database, read-only)."""
    hs_db = matrix_env.synapse.data_dir / "homeserver.db"
    with sqlite3.connect(f"file:{hs_db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM device_inbox WHERE user_id = ?", [user_id]).fetchone()[0]


async def replied_and_closed(matrix_env: MatrixEnv, officer, visitor: Visitor) -> tuple[str, str, str]:
    """A chat opened, answered by the officer (its room key: a to-device message in the puppet's inbox on the
    homeserver) and closed by them; its room, its puppet and the officer's reply."""
    import uuid

    from tests.integration.test_conversation import open_chat
    from tests.support.bridge_db import rows
    from tests.support.waiting import until

    got = await open_chat(visitor, officer)
    room_id, puppet = got.room_id, got.sender
    reply = f"noted {uuid.uuid4().hex[:6]}"
    await officer.send(room_id, reply)
    await visitor.wait_frame(lambda f: f.get("body") == reply, 60, "the reply at the citizen")
    await until(lambda: homeserver_inbox(matrix_env, puppet) >= 1, 30, "the officer's room key in the inbox")
    await officer.send(room_id, "!close resolved")
    await until(lambda: rows(matrix_env.db_path, "SELECT state FROM chats WHERE id = ?",
                             [visitor.chat_id])[0][0] == "closed", 60, "the chat closed")
    return room_id, puppet, reply


async def test_burst_of_chats_while_the_pool_refills(matrix_env: MatrixEnv, bridge_log):
    visitors = [Visitor(matrix_env.public_url) for _ in range(8)]
    names = [f"Citizen {i}" if i % 2 else None for i in range(len(visitors))]
    try:
        await asyncio.gather(*(v.create(topic="general", display_name=name) for v, name in zip(visitors, names)))
        await asyncio.gather(*(v.connect() for v in visitors))
        # A chat's puppet and room are made with its first message: all eight speak at once.
        await asyncio.gather(*(v.send(f"burst {i}") for i, v in enumerate(visitors)))
        db = matrix_env.dir / "precinct.db"
        rooms = await asyncio.gather(*(room_of(db, v.chat_id, 90) for v in visitors))
        assert len(set(rooms)) == len(visitors)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        ids = [v.chat_id for v in visitors]
        rows = conn.execute(f"SELECT user_id, device_id, cross_signed, master_key FROM puppets WHERE chat_id IN "
                            f"({','.join('?' * len(ids))})", ids).fetchall()
        puppet_of = dict(conn.execute(f"SELECT chat_id, user_id FROM puppets WHERE chat_id IN "
                                      f"({','.join('?' * len(ids))})", ids).fetchall())
        conn.close()
        assert len(rows) == len(visitors) and len({r[0] for r in rows}) == len(visitors)
        assert all(r[2] == 1 and r[3] for r in rows)
        # Check with the homeserver, as an officer's client would: the device carries a signature by
        # the user's self-signing key, which carries a signature by the master key we recorded.
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{matrix_env.synapse.url}/_matrix/client/v3/login",
                              json={"type": "m.login.password", "user": "officer1", "password": PASSWORD}) as r:
                token = (await r.json())["access_token"]
            async with s.post(f"{matrix_env.synapse.url}/_matrix/client/v3/keys/query",
                              json={"device_keys": {r[0]: [] for r in rows}},
                              headers={"Authorization": f"Bearer {token}"}) as r:
                keys = await r.json()
        for user_id, device_id, _, master in rows:
            devices = keys["device_keys"][user_id]
            assert list(devices) == [device_id], "exactly one device per puppet"
            master_key = keys["master_keys"][user_id]
            assert list(master_key["keys"].values()) == [master]
            ssk = keys["self_signing_keys"][user_id]
            assert verify_json(ssk, user_id, master)
            ssk_pub = next(iter(ssk["keys"].values()))
            assert verify_json(devices[device_id], user_id, ssk_pub)
        # Officers see each citizen by the name they gave, or as "Visitor", from the puppet's membership in its
        # room: with the pool (2) spent, most puppets were made on demand, and each was named before its room
        # was made, so its first membership event carries the name (no rename after it, no localpart shown).
        as_token = yaml.safe_load(matrix_env.registration_path.read_text())["as_token"]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {as_token}"}) as s:
            for visitor, name, room in zip(visitors, names, rooms):
                puppet = puppet_of[visitor.chat_id]
                async with s.get(f"{matrix_env.synapse.url}/_matrix/client/v3/rooms/{room}/state",
                                 params={"user_id": puppet}) as r:
                    assert r.status == 200, await r.text()
                    state = await r.json()
                member = next(e for e in state if e["type"] == "m.room.member" and e["state_key"] == puppet)
                assert member["content"].get("displayname") == (name or "Visitor")
                if name is None:
                    assert "replaces_state" not in member.get("unsigned", {}), "a puppet renamed after its room"
        log = matrix_env.bridge.log_path.read_text(errors="replace")
        for problem in ("could not fill the puppet pool", "signature upload refused", "setting up chat"):
            assert problem not in log, f"bridge log shows {problem!r}"
    finally:
        await asyncio.gather(*(v.close() for v in visitors))


async def test_a_purged_chats_puppet_is_retired_with_its_device_room_and_keys(matrix_env: MatrixEnv, officer_of,
                                                                             bridge_log):
    """At the end of a chat's retention the bridge purges it, and its puppet goes with it: the puppet leaves the
    room, its device is deleted on the homeserver (with it the to-device messages Synapse kept for it: it keeps
    every one pushed to an appservice), and its device store here (every room key it held) and its row go.
    Before, all of it stayed for good, a crypto store of about 130 kB per chat ever served among it."""
    import time

    from tests.support.bridge_db import audit_entries, rows
    from tests.support.waiting import until

    db = matrix_env.db_path
    as_token = yaml.safe_load(matrix_env.registration_path.read_text())["as_token"]

    def inbox(user_id: str) -> int:
        return homeserver_inbox(matrix_env, user_id)

    async def devices_of(user_id: str) -> list[str]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{matrix_env.synapse.url}/_matrix/client/v3/devices", params={"user_id": user_id},
                             headers={"Authorization": f"Bearer {as_token}"}) as r:
                assert r.status == 200, await r.text()
                return [d["device_id"] for d in (await r.json())["devices"]]

    officer = await officer_of("central")
    visitor = Visitor(matrix_env.public_url)
    try:
        room_id, puppet, _ = await replied_and_closed(matrix_env, officer, visitor)
    finally:
        await visitor.close()
    [(device_id,)] = rows(db, "SELECT device_id FROM puppets WHERE user_id = ?", [puppet])
    # The close empties the device's inbox (test below); something sent to it later stays until the retirement.
    await until(lambda: inbox(puppet) == 0, 60, "the closed chat's inbox emptied")
    later = await officer.client.to_device(nio.ToDeviceMessage("m.dummy", puppet, device_id, {}))
    assert isinstance(later, nio.ToDeviceResponse), later
    device_store = matrix_env.dir / "crypto" / f"{puppet[1:].split(':')[0]}.db"
    assert device_store.exists() and device_id in await devices_of(puppet) and inbox(puppet) == 1

    # Two years on: the bridge starts, its keeper purges the chat at once and retires the puppet.
    matrix_env.bridge.stop()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE chats SET closed_ts = ? WHERE id = ?", [int(time.time() * 1000) - 800 * 86_400_000,
                                                                    visitor.chat_id])
    matrix_env.bridge.start()
    await until(lambda: not rows(db, "SELECT 1 FROM puppets WHERE user_id = ?", [puppet]), 60, "the puppet retired")
    assert not rows(db, "SELECT 1 FROM chats WHERE id = ?", [visitor.chat_id])
    assert any(e["target"] == visitor.chat_id for e in audit_entries(db, "chat.purged"))
    assert not rows(db, "SELECT 1 FROM puppet_room_keys WHERE user_id = ?", [puppet])
    assert not device_store.exists(), "the retired device's keys are still on the bridge's disk"
    assert device_id not in await devices_of(puppet)
    await until(lambda: puppet not in officer.client.rooms[room_id].users, 60, "the puppet gone from the room")
    await until(lambda: inbox(puppet) == 0, 60, "the homeserver's inbox of the deleted device emptied")


async def test_a_finished_chats_device_inbox_is_emptied(matrix_env: MatrixEnv, officer_of, bridge_log):
    """Synapse keeps every to-device message it pushed to the appservice until the device fetches its inbox past
    it, so a finished chat's officers' room keys stayed there until its puppet was retired, years later. Once a
    closed chat has sent its last, the bridge takes what is left and has the homeserver drop it."""
    from tests.support.bridge_db import rows
    from tests.support.waiting import until

    officer = await officer_of("central")
    visitor = Visitor(matrix_env.public_url)
    try:
        _, puppet, reply = await replied_and_closed(matrix_env, officer, visitor)
        await until(lambda: homeserver_inbox(matrix_env, puppet) == 0, 60, "the finished chat's inbox emptied")
        # Emptied, not lost: the chat's record holds the officer's reply, and the puppet still has its device.
        assert rows(matrix_env.db_path, "SELECT 1 FROM messages WHERE chat_id = ? AND body = ?",
                    [visitor.chat_id, reply])
        assert rows(matrix_env.db_path, "SELECT device_id FROM puppets WHERE user_id = ?", [puppet])
    finally:
        await visitor.close()
