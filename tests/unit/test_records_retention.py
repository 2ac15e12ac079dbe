"""Retention, legal hold and erasure (bridge/records/retention.py) and the !hold/!unhold commands, on a real
store: purge respects retention and holds and touches no other chat; erasure refused under hold or while
open (refusal audited), otherwise the personal data goes and the chain still verifies; every action audited."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.chats.lifecycle import ChatService
from bridge.officers.chat_room import ChatRoomCommands
from bridge.records import Records
from bridge.records.retention import DAY_MS, Refused, Retention
from bridge.records.transcripts import now_ms, verify_document
from bridge.store import Store
from bridge.store.attachments import Attachment
from tests.support.records import records_env

SUPERVISOR = "@sergeant1:police.example"        # example-config.yaml: supervisor of "central"


@pytest.fixture
def env(tmp_path: Path):
    config, store, records, service = records_env(tmp_path)
    yield config, store, records, service, Retention(config, store, records)
    store.close()


def finished_chat(store: Store, service: ChatService, text: str, closed_days_ago: float | None = 0):
    chat, _ = service.open("general", "Jo Citizen", "en")
    store.chats.set_room(chat.id, f"!room-{chat.id}:p")
    store.chats.set_puppet(chat.id, f"@webchat_{chat.number}:p")
    msg = service.visitor_message(store.chats.get(chat.id), "c1", text)
    item = store.outbox.next_for(chat.id)
    store.outbox.mark_sent(item.id, f"$sent-{chat.number}")
    store.attachments.add(Attachment(chat.id, msg.seq, "photo.jpg", "image/jpeg", 3, "ab", "mxc://p/x", None))
    store.feedback.add(chat.id, 5, "Thanks, Jo")
    if closed_days_ago is not None:
        service.close(store.chats.get(chat.id), by="visitor")
        store.db.execute("UPDATE chats SET closed_ts = ? WHERE id = ?",
                         [now_ms() - int(closed_days_ago * DAY_MS), chat.id])
    return store.chats.get(chat.id)


def actions(records: Records) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["outcome"], e["target"]) for e in records.trail.entries()]


def test_purge_respects_retention_and_holds_and_leaves_other_chats(env):
    config, store, records, service, retention = env
    old = finished_chat(store, service, "old", closed_days_ago=731)
    held = finished_chat(store, service, "held", closed_days_ago=900)
    recent = finished_chat(store, service, "recent", closed_days_ago=10)
    still_open = finished_chat(store, service, "open", closed_days_ago=None)
    retention.hold(held, "case 42", "@sup:p", "cli")
    assert retention.purge_expired() == [old.id]
    assert store.chats.get(old.id) is None and store.messages.since(old.id, 0) == []
    assert store.chat_records.entries(old.id) == [] and store.record_seals.get(old.id) is None
    for kept in (held, recent, still_open):
        assert store.chats.get(kept.id) is not None and records.transcripts.verify_stored(kept.id) is None
        assert len(store.messages.since(kept.id, 0)) >= 2
    assert ("chat.purged", "ok", old.id) in actions(records)
    assert records.trail.verify() is None
    retention.lift(held, "@sup:p", "cli")
    assert retention.purge_expired() == [held.id]


def test_an_agency_retention_overrides_the_default(env, tmp_path):
    config, store, records, service, retention = env
    chat = finished_chat(store, service, "x", closed_days_ago=31)
    assert retention.purge_expired() == []
    object.__setattr__(config.agencies[0], "retention_days", 30)
    assert config.retention_days("central") == 30
    assert retention.purge_expired() == [chat.id]


def test_erasure_refused_under_hold_and_while_open_and_the_refusal_recorded(env):
    config, store, records, service, retention = env
    chat = finished_chat(store, service, "my address is 1 High St")
    retention.hold(chat, "case 7", "@sup:p", "!room:p")
    with pytest.raises(Refused) as refused:
        retention.erase(chat, "visitor", "127.0.0.1")
    assert refused.value.error == "legal_hold"
    assert ("chat.erase", "refused", chat.id) in actions(records)
    assert store.messages.since(chat.id, 0)[1].body == "my address is 1 High St"
    open_chat = finished_chat(store, service, "still talking", closed_days_ago=None)
    with pytest.raises(Refused) as refused:
        retention.erase(open_chat, "visitor", "127.0.0.1")
    assert refused.value.error == "chat_open"
    assert [a for a in actions(records) if a[0] == "chat.erase"] == [("chat.erase", "refused", chat.id),
                                                                    ("chat.erase", "refused", open_chat.id)]
    kinds = [e["kind"] for e in records.transcripts.entries(chat.id)]
    assert kinds[-1] == "legal_hold.set"


def test_erasure_removes_personal_data_keeps_the_chain_and_queues_redactions(env):
    config, store, records, service, retention = env
    chat = finished_chat(store, service, "my address is 1 High St")
    other = finished_chat(store, service, "other citizen's words")
    result = retention.erase(chat, "visitor", "127.0.0.1")
    assert result.redactions == 1 and not result.already
    assert [m.body for m in store.messages.since(chat.id, 0)] == ["", "", ""]
    assert store.chats.get(chat.id).display_name is None and store.attachments.get(chat.id, 2) is None
    assert store.feedback.get(chat.id)["comment"] is None
    assert [(r.kind, r.event_id, r.user_id) for r in store.redactions.pending()] == [
        ("event", f"$sent-{chat.number}", chat.puppet), ("profile", "", chat.puppet)]   # + the name in its profile
    doc = records.transcripts.document(chat.id)
    assert all("content" not in e for e in doc["entries"]) and doc["entries"][-1]["kind"] == "erased"
    assert verify_document(doc, records.signer.public_key) is None             # re-signed, still intact
    assert records.search("High", actor="@sup:p", origin="cli") == []
    files = [store.db.path, store.db.path.with_name(store.db.path.name + "-wal")]
    assert not any(b"High St" in f.read_bytes() for f in files if f.exists())     # not even in freed pages
    assert store.messages.since(other.id, 0)[1].body == "other citizen's words"    # nobody else's chat
    assert records.transcripts.verify_stored(other.id) is None
    assert ("chat.erase", "ok", chat.id) in actions(records)
    assert retention.erase(chat, "visitor", "127.0.0.1").already                     # asking twice is fine


def test_holds_are_chained_and_audited(env):
    config, store, records, service, retention = env
    chat = finished_chat(store, service, "x")
    assert retention.hold(chat, "case 9", "@sup:p", "cli") and not retention.hold(chat, "again", "@sup:p", "cli")
    assert store.legal_holds.get(chat.id).reason == "case 9"
    assert retention.lift(chat, "@sup:p", "cli") and not retention.lift(chat, "@sup:p", "cli")
    assert [a[:2] for a in actions(records) if a[0].startswith("legal_hold")] == [
        ("legal_hold.set", "ok"), ("legal_hold.set", "unchanged"), ("legal_hold.lifted", "ok"),
        ("legal_hold.lifted", "unchanged")]
    assert [e["kind"] for e in records.transcripts.entries(chat.id)][-2:] == ["legal_hold.set", "legal_hold.lifted"]


async def test_hold_commands_in_the_chat_room_are_for_supervisors_only(env):
    config, store, records, service, retention = env
    chat = finished_chat(store, service, "x", closed_days_ago=None)
    commands = ChatRoomCommands(service, records, "!", retention=retention)
    await commands.handle(chat, "@officer1:police.example", "Officer One", "!hold case 3")
    assert store.legal_holds.get(chat.id) is None
    assert ("legal_hold.set", "refused", chat.id) in actions(records)
    await commands.handle(chat, SUPERVISOR, "Sergeant", "!hold case 3")
    assert store.legal_holds.get(chat.id).reason == "case 3"
    await commands.handle(chat, SUPERVISOR, "Sergeant", "!unhold")
    assert store.legal_holds.get(chat.id) is None
    notices = []
    while (item := store.outbox.next_for(chat.id)) is not None:
        notices.append(item.content["body"])
        store.outbox.mark_sent(item.id, f"$n{item.id}")
    assert any("Only a supervisor" in n for n in notices) and any("legal hold" in n for n in notices)


async def test_the_keeper_purges_on_schedule_and_gives_up_a_failing_redaction_on_the_record(env):
    from bridge.matrix.homeserver import MatrixError
    from bridge.records.keeper import GIVE_UP_AFTER, RecordsKeeper

    config, store, records, service, retention = env

    class RefusingHomeserver:                  # the homeserver's answer is all that matters here
        calls = 0

        async def redact(self, *args: object) -> str:
            RefusingHomeserver.calls += 1
            raise MatrixError(403, {"errcode": "M_FORBIDDEN"}, "redact")

        async def room_state(self, *args: object) -> list:
            RefusingHomeserver.calls += 1
            raise MatrixError(403, {"errcode": "M_FORBIDDEN"}, "room state")

    expired = finished_chat(store, service, "old", closed_days_ago=800)
    erased = finished_chat(store, service, "to erase")
    retention.erase(erased, "visitor", "127.0.0.1")
    keeper = RecordsKeeper(config, store, RefusingHomeserver(), records, retention)  # type: ignore[arg-type]
    keeper.housekeeping()
    assert store.chats.get(expired.id) is None and store.chats.get(erased.id) is not None
    for _ in range(GIVE_UP_AFTER):
        assert await keeper.redact_pending() is False
    assert RefusingHomeserver.calls == 2 * GIVE_UP_AFTER and store.redactions.count() == 0
    assert ("chat.redaction", "failed", erased.id) in actions(records)
    assert await keeper.redact_pending() is True


async def test_an_officers_close_seals_the_record(env):
    config, store, records, service, retention = env
    chat, _ = service.open("general", None, None)
    store.chats.set_room(chat.id, "!r:p")
    commands = ChatRoomCommands(service, records, "!", retention=retention)
    await commands.handle(store.chats.get(chat.id), "@officer1:police.example", "Officer One", "!close resolved")
    doc = records.transcripts.document(chat.id)
    assert doc["entries"][-1]["kind"] == "closed" and doc["entries"][-1]["content"] == {"reason": "resolved"}
    assert doc["seal"]["last_index"] == len(doc["entries"]) and verify_document(doc) is None
    assert ("chat.close", "ok", chat.id) in actions(records)
