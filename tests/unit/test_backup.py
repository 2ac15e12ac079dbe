"""``python -m bridge backup | restore`` on real SQLite files (no homeserver): what is copied, what is refused.

The whole path against a running bridge and Synapse is tests/integration/test_backup_restore.py.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from bridge.__main__ import main
from bridge.store import Store
from bridge.store.backup import MANIFEST, RETIRED, Refused, backup, restore

from tests.support.configs import ROOT


def make_bridge_folder(tmp_path: Path) -> Path:
    """A config, registration, signing key, store (with a chat puppet and a pool puppet) and a crypto store."""
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["store"].update(path="data/precinct.db", crypto_dir="data/crypto")
    raw["records"]["signing_key_path"] = "data/records-signing.key"
    folder = tmp_path / "bridge"
    (folder / "data" / "crypto").mkdir(parents=True)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    (folder / "registration.yaml").write_text("id: precinct\nas_token: " + "a" * 64 + "\n")
    (folder / "data" / "records-signing.key").write_text("key\n")
    store = Store.open(folder / "data" / "precinct.db", 1000)
    store.puppets.add("@webchat_chat:example", "DEV1", "chat-1")
    store.puppets.add("@webchat_pool:example", "DEV2")
    store.close()
    crypto = sqlite3.connect(folder / "data" / "crypto" / "webchat_chat.db")
    crypto.execute("CREATE TABLE account (pickle TEXT)")
    crypto.execute("INSERT INTO account VALUES ('olm account')")
    crypto.commit()
    crypto.close()
    return config


def test_backup_copies_everything_with_a_manifest_and_restore_puts_it_back(tmp_path):
    config = make_bridge_folder(tmp_path)
    manifest = backup(config, tmp_path / "backup")
    assert {f["path"]: f["role"] for f in manifest["files"]} == {
        "config.yaml": "config", "registration.yaml": "registration", "records-signing.key": "signing_key",
        "store/precinct.db": "store", "crypto/webchat_chat.db": "crypto"}
    assert manifest["schema_version"] > 0 and manifest["precinct_version"] and manifest["created"]
    assert "c" * 64 not in json.dumps(manifest)                       # the pickle key itself is not in it
    assert all((tmp_path / "backup" / f["path"]).stat().st_mode & 0o077 == 0 for f in manifest["files"])

    fresh = tmp_path / "fresh" / "config.yaml"
    restore(tmp_path / "backup", fresh)
    data = fresh.parent / "data"
    conn = sqlite3.connect(data / "crypto" / "webchat_chat.db")
    assert conn.execute("SELECT pickle FROM account").fetchall() == [("olm account",)]
    conn.close()
    conn = sqlite3.connect(data / "precinct.db")
    puppets = dict(conn.execute("SELECT user_id, chat_id FROM puppets").fetchall())
    conn.close()
    # The chat keeps its puppet; the pool's puppet is never handed out again (a lost chat may hold it).
    assert puppets == {"@webchat_chat:example": "chat-1", "@webchat_pool:example": RETIRED}
    assert (fresh.parent / "registration.yaml").read_text().startswith("id: precinct")
    assert (data / "records-signing.key").read_text() == "key\n"


def test_the_backup_is_a_snapshot_of_the_store_not_its_files(tmp_path):
    """A commit still only in the write-ahead log (the bridge running) is in the copy; no -wal beside it."""
    config = make_bridge_folder(tmp_path)
    live = sqlite3.connect(tmp_path / "bridge" / "data" / "precinct.db")
    live.execute("PRAGMA wal_autocheckpoint=0")
    live.execute("INSERT INTO settings (key, value) VALUES ('written', 'after the last checkpoint')")
    live.commit()
    try:
        backup(config, tmp_path / "backup")
    finally:
        live.close()
    copy = tmp_path / "backup" / "store" / "precinct.db"
    assert not Path(f"{copy}-wal").exists()
    conn = sqlite3.connect(copy)
    assert conn.execute("SELECT value FROM settings WHERE key = 'written'").fetchall() == [("after the last checkpoint",)]
    conn.close()


def test_a_backup_into_a_folder_that_is_not_empty_is_refused_with_exit_2(tmp_path, capsys):
    config = make_bridge_folder(tmp_path)
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "old").write_text("x")
    assert main(["backup", "-c", str(config), "--to", str(tmp_path / "backup")]) == 2
    err = capsys.readouterr().err
    assert "Backup refused" in err and "not empty" in err and str(tmp_path / "backup") in err
    assert main(["backup", "-c", str(config), "--to", str(tmp_path / "other")]) == 0


def test_a_backup_without_a_registration_names_it(tmp_path, monkeypatch):
    config = make_bridge_folder(tmp_path)
    (config.parent / "registration.yaml").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Refused, match="--registration"):
        backup(config, tmp_path / "backup")
    assert not (tmp_path / "backup").exists()


@pytest.mark.parametrize("damage, says", [
    (lambda b: (b / "crypto" / "webchat_chat.db").write_bytes(b"changed"), "bytes"),
    (lambda b: (b / "records-signing.key").write_text("kex\n"), "SHA-256"),
    (lambda b: (b / "crypto" / "webchat_chat.db").unlink(), "missing"),
    (lambda b: (b / MANIFEST).unlink(), "not a complete backup"),
])
def test_restore_checks_every_file_before_writing_anything(tmp_path, capsys, damage, says):
    config = make_bridge_folder(tmp_path)
    backup(config, tmp_path / "backup")
    damage(tmp_path / "backup")
    fresh = tmp_path / "fresh" / "config.yaml"
    assert main(["restore", "--from", str(tmp_path / "backup"), "-c", str(fresh)]) == 2
    assert says in capsys.readouterr().err
    assert not fresh.parent.exists()


def test_restore_refuses_a_store_from_a_newer_precinct(tmp_path):
    config = make_bridge_folder(tmp_path)
    backup(config, tmp_path / "backup")
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    manifest["schema_version"] = 10_000
    (tmp_path / "backup" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(Refused, match="schema version 10000"):
        restore(tmp_path / "backup", tmp_path / "fresh" / "config.yaml")


def test_restore_never_overwrites_and_needs_the_same_pickle_key(tmp_path):
    config = make_bridge_folder(tmp_path)
    backup(config, tmp_path / "backup")
    with pytest.raises(Refused, match="never overwrites.*precinct.db"):
        restore(tmp_path / "backup", config)
    other = yaml.safe_load(config.read_text())
    other["crypto"]["pickle_key"] = "d" * 64
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(Refused, match="pickle_key"):
        restore(tmp_path / "backup", tmp_path / "new" / "config.yaml")
    assert not (tmp_path / "new" / "data").exists()
