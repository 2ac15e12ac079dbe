"""Puppets of purged and erased chats are retired (bridge/matrix/puppets.py ``PuppetManager.retire``): which
ones, and what a homeserver that refuses leaves for the next sweep. Against Synapse:
tests/integration/test_puppets.py::test_a_purged_chats_puppet_is_retired_with_its_device_room_and_keys and
tests/integration/test_erasure.py."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bridge.matrix.crypto import Crypto
from bridge.matrix.homeserver import MatrixError
from bridge.matrix.puppets import BOT_CHAT, PuppetManager
from bridge.records.retention import Retention
from bridge.store import Store
from tests.support.records import records_env
from tests.unit.test_records_retention import finished_chat


class Homeserver:
    """Takes the requests a retirement makes (leave, delete device) and refuses them while ``away``."""

    def __init__(self) -> None:
        self.away = False
        self.calls: list[tuple[str, str, str | None]] = []

    async def send(self, req: Any, *, user_id: str | None = None, ok: tuple[int, ...] = (200,), **_: Any) -> dict:
        if self.away:
            raise MatrixError(502, {"errcode": "M_UNKNOWN", "error": "away"}, "retire")
        self.calls.append((req.method, req.path, user_id))
        return {}


async def test_only_puppets_of_purged_chats_are_retired_and_a_refusal_waits_for_the_next_sweep(tmp_path):
    store = Store.open(tmp_path / "p.db")
    for n in ("kept", "gone", "erased"):
        store.chats.create(n, "h" + n, "general", "central", None, None)
    store.puppets.add("@webchat_kept:p", "DKEPT", "kept")
    store.puppets.add("@webchat_gone:p", "DGONE", "gone")
    store.puppets.add("@webchat_pool:p", "DPOOL")                  # in the pool: no chat yet
    store.puppets.add("@precinct:p", "DBOT", BOT_CHAT)             # the bot: never a chat
    store.puppets.add("@webchat_erased:p", "DERASED", "erased")
    store.puppets.remember_room_key("@webchat_gone:p", "!gone:p", {"session_id": "s", "session_key": "k"})
    store.db.execute("DELETE FROM chats WHERE id = 'gone'")       # purged (records/retention.py) ...
    store.puppets.retiring("@webchat_gone:p", "!gone:p")           # ... which marks its puppet
    crypto_dir = tmp_path / "crypto"
    crypto_dir.mkdir()
    for name in ("webchat_gone.db", "webchat_gone.db-journal", "webchat_gone2.db", "webchat_kept.db"):
        (crypto_dir / name).write_bytes(b"keys")
    hs = Homeserver()
    crypto = Crypto(hs, "http://127.0.0.1:1", crypto_dir, "k" * 32, store.puppets)  # type: ignore[arg-type]
    manager = PuppetManager(hs, crypto, store.puppets, "p", "webchat_", bot="@precinct:p")  # type: ignore[arg-type]

    assert [p.user_id for p in store.puppets.retirable()] == ["@webchat_gone:p"]
    hs.away = True                                       # nothing is deleted here before the homeserver has
    assert await manager.retire() == 0
    assert store.puppets.get("@webchat_gone:p") is not None and (crypto_dir / "webchat_gone.db").exists()
    hs.away = False
    assert await manager.retire() == 1
    assert hs.calls == [("POST", "/_matrix/client/v3/rooms/%21gone%3Ap/leave", "@webchat_gone:p"),
                        ("DELETE", "/_matrix/client/v3/devices/DGONE", "@webchat_gone:p")]
    assert store.puppets.get("@webchat_gone:p") is None and store.puppets.room_keys("@webchat_gone:p", "!gone:p") == []
    assert sorted(p.name for p in crypto_dir.iterdir()) == ["webchat_gone2.db", "webchat_kept.db"]
    assert {p.user_id for p in (store.puppets.get(u) for u in ("@webchat_kept:p", "@webchat_pool:p", "@precinct:p"))
            if p} == {"@webchat_kept:p", "@webchat_pool:p", "@precinct:p"}
    assert await manager.retire() == 0                  # nothing left to do
    store.close()


def test_puppets_of_chats_purged_or_erased_before_the_upgrade_are_marked_for_retirement(tmp_path):
    """A store written by an earlier version: its purged and erased chats' puppets were never marked."""
    config, store, records, service = records_env(tmp_path)
    erased = finished_chat(store, service, "my address")
    store.puppets.add(erased.puppet, "DERASED", erased.id)
    Retention(config, store, records).erase(erased, "visitor", "127.0.0.1")
    live = finished_chat(store, service, "still kept", closed_days_ago=None)
    store.puppets.add(live.puppet, "DLIVE", live.id)
    store.puppets.add("@webchat_purged:p", "DPURGED", "a-chat-purged-long-ago")
    store.puppets.add("@webchat_pool:p", "DPOOL")
    store.puppets.add("@precinct:p", "DBOT", BOT_CHAT)
    store.db.execute("UPDATE puppets SET retire_ts = NULL")      # as version 21 had them: no such mark
    store.db.execute("DROP INDEX idx_puppets_retiring")
    store.db.execute("ALTER TABLE puppets DROP COLUMN retire_ts")
    store.db.execute("DROP TABLE puppet_olm_taken")                 # (version 23's)
    store.db.execute("UPDATE schema_version SET version = 21")
    store.close()
    store = Store.open(tmp_path / "p.db")                         # migrated on opening
    marked = {u for (u,) in store.db.execute("SELECT user_id FROM puppets WHERE retire_ts IS NOT NULL").fetchall()}
    assert marked == {erased.puppet, "@webchat_purged:p"}
    store.close()


async def test_an_erased_chats_puppet_goes_once_the_redactions_it_owes_are_sent(tmp_path):
    """Erased at the citizen's request: its redactions are made as the puppet, so it stays until they are sent;
    then its device and keys go like a purged chat's, while the chat and its record stay."""
    config, store, records, service = records_env(tmp_path)
    chat = finished_chat(store, service, "my address")              # closed, one message sent as the puppet
    store.puppets.add(chat.puppet, "DERASED", chat.id)
    Retention(config, store, records).erase(chat, "visitor", "127.0.0.1")
    assert store.redactions.count(chat.id) >= 1 and store.puppets.retirable() == []
    for owed in store.redactions.pending():
        store.redactions.done(owed.id)
    assert [p.user_id for p in store.puppets.retirable()] == [chat.puppet]
    hs = Homeserver()
    crypto = Crypto(hs, "http://127.0.0.1:1", tmp_path, "k" * 32, store.puppets)  # type: ignore[arg-type]
    assert await PuppetManager(hs, crypto, store.puppets, "p", "webchat_").retire() == 1  # type: ignore[arg-type]
    assert ("POST", f"/_matrix/client/v3/rooms/{quote(chat.room_id)}/leave", chat.puppet) in hs.calls
    assert store.puppets.get(chat.puppet) is None and store.chats.get(chat.id) is not None
    assert records.transcripts.verify_stored(chat.id) is None
    store.close()
