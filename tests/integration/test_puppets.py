"""Puppets under a burst of new chats: each gets its own device, signed by its own cross-signing key."""
from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
import yaml

from bridge.matrix.crosssign import verify_json
from tests.conftest import PASSWORD, MatrixEnv
from tests.support.bridge_db import room_of
from tests.support.visitor import Visitor


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
