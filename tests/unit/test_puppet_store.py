"""PuppetStore (matrix/crypto.py) skips nio store work that changes nothing, and answers as nio's own store:
the same encrypted rooms and the same Olm account after a reload, whatever was skipped."""
from __future__ import annotations

import nio

from bridge.matrix.crypto import PuppetStore

USER, DEVICE, KEY = "@webchat_a:localhost", "DEVA", "pickle-key"


def _store(path) -> PuppetStore:
    return PuppetStore(USER, DEVICE, str(path), KEY, "a.db")


def test_rooms_and_account_survive_a_reload_as_with_nios_store(tmp_path):
    store = _store(tmp_path)
    account = nio.crypto.OlmAccount()
    store.save_account(account)
    assert store.load_encrypted_rooms() == set()
    store.save_encrypted_rooms(set())
    store.save_encrypted_rooms({"!a:localhost"})
    store.save_encrypted_rooms({"!a:localhost", "!b:localhost"})
    account.shared = True
    store.save_account(account)                         # the account row is updated, not replaced
    store.database.close()

    again = _store(tmp_path)
    assert again.load_encrypted_rooms() == {"!a:localhost", "!b:localhost"}
    loaded = again.load_account()
    assert loaded is not None and loaded.shared and loaded.identity_keys == account.identity_keys
    plain = nio.store.SqliteStore(USER, DEVICE, str(tmp_path), KEY, "a.db")    # nio's own store reads the same
    assert plain.load_encrypted_rooms() == {"!a:localhost", "!b:localhost"}


def test_saving_rooms_already_saved_runs_no_query(tmp_path):
    store = _store(tmp_path)
    store.save_account(nio.crypto.OlmAccount())
    store.load_encrypted_rooms()
    store.save_encrypted_rooms({"!a:localhost"})
    queries: list[str] = []
    original = store.database.execute_sql
    store.database.execute_sql = lambda sql, *a, **k: (queries.append(sql), original(sql, *a, **k))[1]
    store.save_encrypted_rooms({"!a:localhost"})
    store.save_encrypted_rooms(set())
    assert queries == []
    store.save_encrypted_rooms({"!a:localhost", "!c:localhost"})
    assert any("INSERT" in q for q in queries)
    assert store.load_encrypted_rooms() == {"!a:localhost", "!c:localhost"}


def test_device_trust_is_read_once_and_again_after_any_trust_write(tmp_path):
    store = _store(tmp_path)
    store.save_account(nio.crypto.OlmAccount())
    device = nio.crypto.OlmDevice("@officer:localhost", "OFFDEV", {"ed25519": "edkey", "curve25519": "cukey"})
    store.save_device_keys({"@officer:localhost": {"OFFDEV": device}})
    assert store.is_device_verified(device) is False
    queries: list[str] = []
    original = store.database.execute_sql
    store.database.execute_sql = lambda sql, *a, **k: (queries.append(sql), original(sql, *a, **k))[1]
    assert store.is_device_verified(device) is False and queries == []     # answered from memory
    store.verify_device(device)
    assert store.is_device_verified(device) is True                         # the write is seen at once
    store.unverify_device(device)
    assert store.is_device_verified(device) is False
    store.verify_device(device)
    store.database.close()
    assert _store(tmp_path).is_device_verified(device) is True              # and it is what the file holds


def test_blacklist_and_ignore_are_read_once_per_device_and_again_after_a_trust_write(tmp_path):
    """Asked for every member device each time a room key is shared (nio's share_group_session_parallel)."""
    store = _store(tmp_path)
    store.save_account(nio.crypto.OlmAccount())
    device = nio.crypto.OlmDevice("@officer:localhost", "OFFDEV", {"ed25519": "edkey", "curve25519": "cukey"})
    store.save_device_keys({"@officer:localhost": {"OFFDEV": device}})
    assert not store.is_device_blacklisted(device) and not store.is_device_ignored(device)
    queries: list[str] = []
    original = store.database.execute_sql
    store.database.execute_sql = lambda sql, *a, **k: (queries.append(sql), original(sql, *a, **k))[1]
    for _ in range(3):
        assert not store.is_device_blacklisted(device) and not store.is_device_ignored(device)
    assert queries == []                                                     # answered from memory
    store.blacklist_device(device)
    assert store.is_device_blacklisted(device) and not store.is_device_ignored(device)
    store.unblacklist_device(device)
    store.ignore_device(device)
    assert not store.is_device_blacklisted(device) and store.is_device_ignored(device)
    store.database.close()
    again = _store(tmp_path)
    assert again.is_device_ignored(device) and not again.is_device_blacklisted(device)


def test_a_key_query_that_changed_no_device_writes_nothing_and_keeps_the_trust_answers(tmp_path):
    """nio saves device keys after every key query, mostly none changed: that reopened the closed store file
    (the bridge closes it between operations) and dropped the trust answers the next decrypt needs."""
    store = _store(tmp_path)
    store.save_account(nio.crypto.OlmAccount())
    device = nio.crypto.OlmDevice("@officer:localhost", "OFFDEV", {"ed25519": "edkey", "curve25519": "cukey"})
    store.save_device_keys({"@officer:localhost": {"OFFDEV": device}})
    assert store.is_device_verified(device) is False
    store.database.close()
    queries: list[str] = []
    original = store.database.execute_sql
    store.database.execute_sql = lambda sql, *a, **k: (queries.append(sql), original(sql, *a, **k))[1]
    store.save_device_keys({})
    store.save_device_keys({"@officer:localhost": {}})
    assert store.is_device_verified(device) is False
    assert queries == [] and store.database.is_closed()
    other = nio.crypto.OlmDevice("@officer:localhost", "NEWDEV", {"ed25519": "ed2", "curve25519": "cu2"})
    store.save_device_keys({"@officer:localhost": {"NEWDEV": other}})       # a real change is written
    assert any("INSERT" in q for q in queries)
    assert "NEWDEV" in _store(tmp_path).load_device_keys()["@officer:localhost"]


def test_two_stores_keep_their_own_rows_with_the_lighter_binding(tmp_path):
    """nio's models are shared by every puppet's store and bound to one database around each call; binding
    them without peewee's walk of their references must still put each store's rows in its own file."""
    walked = {m for model in nio.store.SqliteStore.models
              for _, m, _ in model._meta.model_graph(refs=True, backrefs=True)}
    unlisted = walked - set(nio.store.SqliteStore.models)
    # What the walk adds is never used by a store call: nothing in nio's store module names it but its
    # schema upgrade, which binds its own list (and gets peewee's walk).
    source = open(nio.store.database.__file__).read()
    assert {m.__name__ for m in unlisted} <= {"TrackedUsers", "DeviceKeys_v1"}
    assert "TrackedUsers" not in source and source.count("DeviceKeys_v1") == 3
    first = PuppetStore(USER, DEVICE, str(tmp_path), KEY, "a.db")
    second = PuppetStore("@webchat_b:localhost", "DEVB", str(tmp_path), KEY, "b.db")
    for store in (first, second):
        store.save_account(nio.crypto.OlmAccount())
    device = nio.crypto.OlmDevice("@officer:localhost", "OFFDEV", {"ed25519": "edkey", "curve25519": "cukey"})
    first.save_device_keys({"@officer:localhost": {"OFFDEV": device}})
    first.verify_device(device)
    second.save_encrypted_rooms({"!b:localhost"})
    assert first.load_device_keys()["@officer:localhost"]["OFFDEV"].ed25519 == "edkey"
    assert "@officer:localhost" not in second.load_device_keys()
    assert first.is_device_verified(device) and not second.is_device_verified(device)
    assert first.load_encrypted_rooms() == set() and second.load_encrypted_rooms() == {"!b:localhost"}


def test_a_store_opened_again_or_anew_gets_the_same_tables_as_nios_own(tmp_path):
    """The table statements are written by peewee for the first store and replayed for the next ones."""
    def schema(path) -> list[tuple]:
        import sqlite3
        with sqlite3.connect(path) as db:
            return sorted(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall())
    first = PuppetStore(USER, DEVICE, str(tmp_path), KEY, "a.db")
    again = PuppetStore(USER, DEVICE, str(tmp_path), KEY, "a.db")          # reopened: nothing changes
    other = PuppetStore("@webchat_b:localhost", "DEVB", str(tmp_path), KEY, "b.db")
    plain = nio.store.SqliteStore("@webchat_c:localhost", "DEVC", str(tmp_path), KEY, "c.db")
    for store in (first, again, other, plain):
        store.database.close()
    assert schema(tmp_path / "a.db") == schema(tmp_path / "b.db") == schema(tmp_path / "c.db")
    assert len(schema(tmp_path / "a.db")) > 10


def test_a_new_store_uses_small_pages_and_an_old_one_keeps_its_own(tmp_path):
    """A device's store is mostly empty tables, a page each: 1 KiB pages make a fresh one about a third the size
    (docs/deployment.md: one per chat kept). A store made with 4 KiB pages (by nio, or an earlier version) opens
    as it is."""
    import sqlite3

    from bridge.matrix.crypto import STORE_PAGE_SIZE

    store = _store(tmp_path)
    account = nio.crypto.OlmAccount()
    account.generate_one_time_keys(50)
    store.save_account(account)
    store.database.close()
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == STORE_PAGE_SIZE == 1024
    assert (tmp_path / "a.db").stat().st_size < 64 * 1024
    old = tmp_path / "old"
    old.mkdir()
    nio.store.SqliteStore(USER, DEVICE, str(old), KEY, "a.db").save_account(account)
    again = _store(old)
    assert again.load_account().identity_keys == account.identity_keys
    with sqlite3.connect(old / "a.db") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
