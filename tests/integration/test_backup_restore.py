"""Backup while the bridge runs, wipe its data, restore into a fresh folder, and go on (issue 12).

The real bridge of tests/support/restorable.py on the session's Synapse, a citizen over the visitor API and
an officer as a real encrypted nio client. What was written after the backup is not in the restored store;
what the test shows happens to it is said in docs/deployment.md ("What a restore brings back").
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from bridge.matrix.crypto import PUPPET_ONE_TIME_KEYS
from tests.conftest import PASSWORD
from tests.support.bridge_db import rows
from tests.support.bridge_process import BridgeProcess
from tests.support.officer import NioOfficer, OfficerPool
from tests.support.restorable import RestorableEnv
from tests.support.visitor import Visitor
from tests.support.waiting import until

ROOT = Path(__file__).parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


async def opened(citizen: Visitor, name: str) -> int:
    number = (await citizen.create(topic="general", display_name=name, consent=True))["number"]
    await citizen.connect()
    return number


async def officer_reads(officer: NioOfficer, body: str, what: str):  # type: ignore[no-untyped-def]
    return await officer.wait_message(lambda m: m.body == body, 90, what)


async def citizen_reads(citizen: Visitor, body: str, what: str) -> dict:
    return await citizen.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == body, 90, what)


def words(tag: str) -> str:
    return f"{tag} {uuid.uuid4().hex[:6]}"


def server_keys(synapse, user_id: str, device_id: str) -> int:
    """How many one-time keys of the device the homeserver holds (read from its own database)."""
    return synapse.query("SELECT COUNT(*) FROM e2e_one_time_keys_json WHERE user_id = ? AND device_id = ?",
                         [user_id, device_id])[0][0]


async def take_keys(officer: NioOfficer, synapse, puppet: str, device: str, left: int) -> None:
    """Officers' devices take the puppet device's one-time keys (each device that first sends it a room key takes
    one) until ``left`` remain on the homeserver: a puppet publishes more only when few are left. The bridge
    hears of it with the next event in one of the puppet's rooms (or at its next start)."""
    url = f"{officer.client.homeserver}/_matrix/client/v3/keys/claim"
    headers = {"Authorization": f"Bearer {officer.client.access_token}"}
    async with aiohttp.ClientSession() as http:
        for _ in range(server_keys(synapse, puppet, device) - left):
            async with http.post(url, json={"one_time_keys": {puppet: {device: "signed_curve25519"}}},
                                 headers=headers) as r:
                body = await r.json()
                assert r.status == 200 and body["one_time_keys"][puppet][device], body


async def new_device_says(pool: OfficerPool, env: RestorableEnv, name: str, room: str, puppet: str,
                          body: str) -> NioOfficer:
    """The officer signs in on a new device and writes in the room: it opens an encrypted session with the
    puppet's device, which takes one of that device's one-time keys from the homeserver."""
    device = await pool.start(env.config["homeserver"]["url"], env.officer_id, name, auto_claim=False)
    await device.wait_member(room, 60)
    await until(lambda: list(device.client.device_store.active_user_devices(puppet)), 60, "the puppet's device known")
    await device.send(room, body)
    return device


async def test_a_backup_taken_while_the_bridge_runs_restores_into_a_fresh_folder(restorable_env: RestorableEnv,
                                                                                 matrix_env, tmp_path):
    env = restorable_env
    synapse = matrix_env.synapse
    bridge = env.bridge(env.config_path, tmp_path / "bridge-before.log")
    fresh = tmp_path / "fresh"                           # where the restored bridge lives: nothing there yet
    restored = env.bridge(fresh / "config.yaml", tmp_path / "bridge-after.log")
    pool = OfficerPool(tmp_path / "officers", PASSWORD)
    citizen, late, newcomer = Visitor(env.public_url), Visitor(env.public_url), Visitor(env.public_url)
    try:
        bridge.start()
        officer = await pool.start(env.config["homeserver"]["url"], env.officer_id, "restore", auto_claim=True)

        # A citizen and an officer converse.
        number = await opened(citizen, "Robin")
        first = words("before the backup, citizen")
        await citizen.send(first)
        received = await officer_reads(officer, first, "the citizen's first message")
        room, puppet_key = received.room_id, received.sender_key
        answer = words("before the backup, officer")
        await officer.send(room, answer)
        await citizen_reads(citizen, answer, "the officer's answer")

        # The backup, while the bridge runs.
        backup = tmp_path / "backup"
        done = cli("backup", "-c", str(env.config_path), "--to", str(backup))
        assert done.returncode == 0, done.stderr
        assert bridge.pid is not None
        manifest = json.loads((backup / "manifest.json").read_text())
        roles = [f["role"] for f in manifest["files"]]
        assert sorted(set(roles)) == ["config", "crypto", "registration", "signing_key", "store"]
        assert manifest["schema_version"] == rows(env.data / "precinct.db", "SELECT version FROM schema_version")[0][0]
        # A second backup into the same folder is refused, clearly.
        again = cli("backup", "-c", str(env.config_path), "--to", str(backup))
        assert again.returncode == 2 and "not empty" in again.stderr, again

        # More is said after the backup, and a second chat begins (it takes a puppet the backup still has
        # in its warm pool).
        citizen_after = words("after the backup, citizen")
        await citizen.send(citizen_after)
        await officer_reads(officer, citizen_after, "the citizen's message after the backup")
        officer_after = words("after the backup, officer")
        officer_after_id = await officer.send(room, officer_after)
        await citizen_reads(citizen, officer_after, "the officer's message after the backup")
        # An officer's new device writes: it takes one of the puppet's one-time keys, and the bridge, restarted,
        # makes a new one, under the ID the backup's copy of the puppet's account will number next.
        puppet, device = rows(env.data / "precinct.db", "SELECT user_id, device_id FROM puppets WHERE chat_id = ?",
                              [citizen.chat_id])[0]
        laptop = words("after the backup, from a new device")
        await new_device_says(pool, env, "laptop", room, puppet, laptop)
        await citizen_reads(citizen, laptop, "the new device's message")
        await take_keys(officer, synapse, puppet, device, PUPPET_ONE_TIME_KEYS[1] - 1)   # more devices, later
        bridge.stop()
        bridge.start()
        await until(lambda: _reconnected(citizen), 60, "the citizen's page back after the restart")
        await until(lambda: server_keys(synapse, puppet, device) >= PUPPET_ONE_TIME_KEYS[0], 60,
                    "the puppet's keys made again")
        await opened(late, "Sam")
        late_words = words("the second chat, after the backup")
        await late.send(late_words)
        late_room = (await officer_reads(officer, late_words, "the second chat's message")).room_id
        pages_last_seq = citizen.last_seq()

        # The bridge stops, its data is gone; the backup goes into a fresh folder and the bridge starts from it.
        bridge.stop()
        shutil.rmtree(env.data)
        # Into the config it came from (kept as it is) …
        in_place = cli("restore", "--from", str(backup), "-c", str(env.config_path))
        assert in_place.returncode == 0, in_place.stderr
        # … never over data that is there …
        over = cli("restore", "--from", str(backup), "-c", str(env.config_path))
        assert over.returncode == 2 and "never overwrites" in over.stderr, over
        shutil.rmtree(env.data)
        # … and into a fresh folder, the config and registration written from the backup.
        done = cli("restore", "--from", str(backup), "-c", str(fresh / "config.yaml"))
        assert done.returncode == 0, done.stderr
        restored.start()

        # The records verify.
        audit = cli("audit", "verify", "-c", str(fresh / "config.yaml"))
        assert audit.returncode == 0 and audit.stdout.startswith("OK"), audit
        exported = tmp_path / "record.json"
        assert cli("transcript", "export", str(number), "-c", str(fresh / "config.yaml"), "-o",
                   str(exported)).returncode == 0
        verified = cli("transcript", "verify", str(exported))
        assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified

        # The chat is still there, as the page comes back to it (asking for what follows the last seq it has).
        ready = await until(lambda: _reconnected(citizen), 60, "the citizen's page back on the restored bridge")
        assert ready["state"] == "active", ready
        replay = Visitor(env.public_url)
        replay.chat_id, replay.token, replay.ws_url = citizen.chat_id, citizen.token, citizen.ws_url
        await replay.connect(since=0)
        await until(lambda: any(f.get("body") == answer for f in replay.messages()), 30, "the replay")
        await replay.close()
        bodies = [f["body"] for f in replay.messages()]
        assert first in bodies and answer in bodies

        # The page has seen more than the restored store holds: the citizen is told, under a seq past the page's.
        told = await citizen.wait_frame(lambda f: f.get("code") == "restored", 30, "the restored notice")
        assert told["seq"] > pages_last_seq

        # It goes on both ways, with the same puppet device, and the page (one message per seq) shows it.
        citizen_now = words("after the restore, citizen")
        await citizen.send(citizen_now)
        now = await officer_reads(officer, citizen_now, "the citizen's message after the restore")
        assert now.room_id == room and now.sender_key == puppet_key, "the puppet must keep its device and keys"
        officer_now = words("after the restore, officer")
        await officer.send(room, officer_now)
        await citizen_reads(citizen, officer_now, "the officer's message after the restore")
        assert [citizen_now, officer_now] == [b for b in page_view(citizen) if b in (citizen_now, officer_now)]
        await officer.wait_message(lambda m: m.room_id == room and "restored from a backup" in m.body, 60,
                                   "the officers told of the restore")

        # Another new device: the restored puppet makes a key again, under an ID the homeserver already holds from
        # after the backup; it skips past those IDs (without that, it could never upload keys again).
        tablet = words("after the restore, from a new device")
        tablet_device = await new_device_says(pool, env, "tablet", room, puppet, tablet)
        await citizen_reads(citizen, tablet, "the second new device's message")
        await take_keys(officer, synapse, puppet, device, PUPPET_ONE_TIME_KEYS[1] - 1)
        # The homeserver tells the bridge a puppet's key count with the next event in one of its rooms (a device
        # that took a key sends something next): here the officer writes.
        after_taking = words("after the keys were taken")
        await officer.send(room, after_taking)
        await citizen_reads(citizen, after_taking, "the officer's message after the keys were taken")
        await until(lambda: server_keys(synapse, puppet, device) >= PUPPET_ONE_TIME_KEYS[0], 60,
                    "the restored puppet's keys made again")
        assert "keys upload failed" not in (tmp_path / "bridge-after.log").read_text(errors="replace")

        # A new chat gets a puppet of its own, never the one the second chat took after the backup. It is claimed
        # from the device that signed in after the restore: the first device cannot read the restored bot's new
        # dispatch notices, because the bot's encrypted sessions with it had moved on after the backup (the
        # restart above) and the restore took them back (docs/deployment.md: not solved).
        officer.auto_claim = lambda number: False
        tablet_device.auto_claim = lambda number: True
        await opened(newcomer, "Kim")
        newcomer_words = words("a new chat after the restore")
        await newcomer.send(newcomer_words)
        newcomer_room = (await officer_reads(officer, newcomer_words, "the new chat's message")).room_id
        assert newcomer_room != late_room, "a restored pool handed out a room a lost chat had taken"

        # What was written after the backup: the officer's words are read back from the room and reach the citizen
        # again, late; the citizen's own are not in the store. They are read back when the officer's first message
        # after the restore comes (under a new room key, or skipping the numbers of the lost ones: either way the
        # push went past something; chats/inbound.py), or by the catch-up 10 s after the start, whichever is first:
        # so they go before it, in the order they were written.
        await citizen.wait_frame(lambda f: f.get("body") == officer_after and f["seq"] > told["seq"], 90,
                                 "the officer's words after the backup, read back from the room")
        restored_view = [b for _, b in rows(fresh / "data" / "precinct.db", "SELECT seq, body FROM messages "
                                                                          "WHERE chat_id = ? ORDER BY seq",
                                                [citizen.chat_id])]
        assert citizen_after not in restored_view and officer_after in restored_view
        assert restored_view.index(officer_after) < restored_view.index(officer_now)
    finally:
        for v in (citizen, late, newcomer):
            await v.close()
        await pool.stop_all()
        bridge.stop()
        restored.stop()


def page_view(citizen: Visitor) -> list[str]:
    """The bodies the citizen's page shows: it keeps the first message of each seq (js/conversation.js)."""
    first: dict[int, str] = {}
    for f in citizen.frames:
        if f.get("type") == "message":
            first.setdefault(f["seq"], f["body"])
    return [first[seq] for seq in sorted(first)]


async def _reconnected(citizen: Visitor) -> dict | None:
    try:
        return await citizen.connect()
    except Exception:
        return None
