"""Secrets at rest: owner-only files and folders whatever the umask, and the check `run` applies."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from bridge import config as cfg
from bridge.private_files import exposure, tighten_tree, write_private
from bridge.store import Store
from tests.support.configs import ROOT


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_database_and_its_wal_and_shm_are_owner_only_under_umask_022(tmp_path: Path, loose_umask):
    store = Store.open(tmp_path / "data" / "precinct.db")
    try:
        store.chats.create("c1", "h1", "general", "central", "Sam", "en")       # a write: the WAL is in use
        files = [tmp_path / "data" / n for n in ("precinct.db", "precinct.db-wal", "precinct.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(tmp_path / "data") == 0o700
    finally:
        store.close()


def test_an_older_database_with_wide_modes_is_narrowed_when_opened(tmp_path: Path, loose_umask):
    path = tmp_path / "precinct.db"
    Store.open(path).close()
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        f.touch()
        os.chmod(f, 0o644)
    store = Store.open(path)
    try:
        assert [mode(f) for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))] == [0o600] * 3
    finally:
        store.close()


def test_write_private_and_exposure_name_the_file_and_the_fix(tmp_path: Path, loose_umask):
    secret = tmp_path / "registration.yaml"
    secret.write_text("old")
    os.chmod(secret, 0o644)
    assert exposure(secret, "appservice registration") == (
        f"appservice registration {secret} can be read by other users (mode 0644); run: chmod 600 {secret}")
    write_private(secret, "as_token: x\n")
    assert secret.read_text() == "as_token: x\n" and mode(secret) == 0o600 and exposure(secret, "x") is None


def test_tighten_tree_makes_an_older_data_folder_owner_only_and_keeps_it_usable(tmp_path: Path, loose_umask):
    root = tmp_path / "demo-data"
    (root / "crypto").mkdir(parents=True)
    (root / "crypto" / "puppet.db").write_text("keys")
    (root / "registration.yaml").write_text("tokens")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    assert tighten_tree(root) == 5
    assert [mode(p) for p in (root, root / "crypto")] == [0o700, 0o700]
    assert [mode(p) for p in (root / "crypto" / "puppet.db", root / "registration.yaml")] == [0o600, 0o600]
    assert mode(root / "run.sh") == 0o700                         # the owner keeps execute
    assert (root / "crypto" / "puppet.db").read_text() == "keys"
    assert tighten_tree(root) == 0


@pytest.mark.parametrize("same", [("appservice.as_token", "appservice.hs_token"),
                                  ("appservice.as_token", "crypto.pickle_key"),
                                  ("appservice.hs_token", "crypto.pickle_key")])
def test_config_refuses_identical_secrets_naming_both_keys(tmp_path: Path, same: tuple[str, str]):
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    cfg.load(raw, tmp_path, {})                                     # distinct: fine
    shared = "x7Kq" * 12
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(raw, tmp_path, {cfg.env_name(k): shared for k in same})
    assert same[0] in str(e.value) and same[1] in str(e.value) and shared not in str(e.value)


def test_the_demo_data_folder_is_owner_only_and_an_older_one_is_narrowed(tmp_path: Path, loose_umask):
    from bridge.devtools import demo

    older = demo.DemoFiles(tmp_path / "demo-data")
    older.dir.mkdir()
    (older.dir / "synapse").mkdir()
    (older.dir / "officer-login.txt").write_text("password")        # as an older demo left it: 0644 in 0755
    demo.prepare_data_dir(older)
    demo.ensure_config(older)                                        # new secrets, as on a first run
    for path in (older.dir, older.dir / "synapse"):
        assert mode(path) == 0o700, path
    for path in (older.config, older.registration, older.login):
        assert mode(path) == 0o600, path
    assert older.login.read_text() == "password"
    demo.ensure_config(older)                                        # a second run keeps working
