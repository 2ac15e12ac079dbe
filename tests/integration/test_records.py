"""Chat records through the real bridge and Synapse: every message and event chained, officers' devices
recorded, the closed chat signed; exported and verified by the command line, tampering named."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.visitor import Visitor
from tests.support.waiting import until

ROOT = Path(__file__).parents[2]


def cli(env: MatrixEnv, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "bridge", *args]
    if args[:2] != ("transcript", "verify"):        # options before a "--" (chat IDs may begin with "-")
        at = argv.index("--") if "--" in argv else len(argv)
        argv[at:at] = ["-c", str(env.config_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


@pytest.fixture
async def officer(officer_of):
    return await officer_of("central")


@pytest.fixture
async def visitor(matrix_env: MatrixEnv):
    v = Visitor(matrix_env.public_url)
    yield v
    await v.close()


async def test_a_closed_chat_is_exported_verified_and_tampering_named(matrix_env, officer, visitor, tmp_path,
                                                                       bridge_log):
    got = await open_chat(visitor, officer)
    reply = f"Officer reply {uuid.uuid4().hex[:6]}"
    await officer.send(got.room_id, reply)
    photo = b"%PDF-1.4 officer form " + uuid.uuid4().bytes
    await officer.send_encrypted_file(got.room_id, photo, "form.pdf", "application/pdf")
    await until(lambda: len([f for f in visitor.messages() if f["from"] == "officer"]) >= 2, 60,
                "the officer's reply and file at the citizen")
    status, _ = await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/close")
    assert status == 200

    out = tmp_path / "chat.json"
    cli(matrix_env, "transcript", "export", "--format", "json", "-o", str(out), "--", visitor.chat_id)
    doc = json.loads(out.read_text())
    kinds = [e["kind"] for e in doc["entries"]]
    assert kinds[0] == "queued" and kinds[-1] == "closed"
    assert {"message.visitor", "officer.joined", "message.officer", "attachment"} <= set(kinds)
    said = next(e for e in doc["entries"] if e["kind"] == "message.officer" and e["content"]["body"] == reply)
    assert said["actor"] == officer.client.user_id
    assert said["details"]["device"] == officer.client.device_id        # the device that encrypted it
    sent_file = next(e for e in doc["entries"] if e["kind"] == "attachment")
    assert sent_file["details"]["sha256"] == hashlib.sha256(photo).hexdigest()
    assert sent_file["details"]["size"] == len(photo) and sent_file["content"]["name"] == "form.pdf"
    assert doc["seal"]["last_index"] == len(doc["entries"])

    key = cli(matrix_env, "records", "public-key").stdout.strip()
    assert key == "ed25519:" + doc["seal"]["public_key"]
    ok = cli(matrix_env, "transcript", "verify", str(out), "--public-key", key)
    assert ok.stdout.startswith("OK:")

    said["content"]["body"] = "Something the officer never wrote"
    out.write_text(json.dumps(doc))
    bad = cli(matrix_env, "transcript", "verify", str(out), "--public-key", key, check=False)
    assert bad.returncode == 1 and f"entry {said['index']} altered" in bad.stdout

    for fmt in ("html", "txt"):
        page = cli(matrix_env, "transcript", "export", str(doc["chat"]["number"]), "--format", fmt).stdout
        assert reply in page and officer.client.device_id in page and "<script" not in page

    hits = cli(matrix_env, "transcript", "search", reply).stdout
    assert f"({visitor.chat_id})" in hits
    assert cli(matrix_env, "audit", "verify").stdout.startswith("OK:")


def test_start_up_records_the_configuration_by_hash_never_its_secrets(matrix_env):
    import sqlite3
    conn = sqlite3.connect(f"file:{matrix_env.dir / 'precinct.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT actor, details FROM audit_log WHERE action = 'config.loaded'").fetchall()
    finally:
        conn.close()
    assert rows and rows[0][0] == "bridge"
    details = json.loads(rows[0][1])
    assert len(details["config_sha256"]) == 64
    for secret in (matrix_env.config["appservice"]["hs_token"], matrix_env.config["appservice"]["as_token"],
                   matrix_env.config["crypto"]["pickle_key"]):
        assert secret not in rows[0][1]
