"""Hash-chained transcripts and audit trail (bridge/records): tampering with any stored or exported entry
is detected and the first entry named; a seal from another key fails; erasure keeps the chain verifiable."""
from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import pytest

from bridge.chats.lifecycle import ChatService
from bridge.records import Records
from bridge.records import chain, export
from bridge.records.signing import Signer, SigningKeyError
from bridge.records.transcripts import verify_document
from bridge.store import Store
from tests.support.records import records_env


@pytest.fixture
def setup(tmp_path: Path):
    env = records_env(tmp_path)
    yield env
    env[1].close()


def closed_chat(store: Store, records: Records, service: ChatService) -> str:
    chat, _ = service.open("general", "Alex Example", "en")
    service.visitor_message(chat, "c1", "My bike was stolen outside the library")
    with store.db.transaction():
        service.officer_message(store.chats.get(chat.id), "text", "Which library?", "@officer1:police.example",
                                "Officer One", "$e1", None, device="OFFICERDEV")
    service.visitor_message(store.chats.get(chat.id), "c2", "The central one, at noon")
    records.chat_event(chat.id, "note", "@officer1:police.example", text="Check CCTV at central library")
    service.close(store.chats.get(chat.id), by="visitor")
    return chat.id


def test_messages_and_events_are_chained_and_the_closed_chat_is_signed(setup):
    config, store, records, service = setup
    chat_id = closed_chat(store, records, service)
    entries = records.transcripts.entries(chat_id)
    assert [e["kind"] for e in entries] == ["queued", "message.visitor", "message.officer", "message.visitor",
                                            "note", "closed"]
    assert entries[0]["prev"] == chain.GENESIS and all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:]))
    officer = entries[2]
    assert officer["actor"] == "@officer1:police.example" and officer["details"]["device"] == "OFFICERDEV"
    assert entries[1]["content"] == {"body": "My bike was stolen outside the library"}
    assert "body" not in entries[1]["details"]                     # personal text sits outside the hashed part
    doc = records.transcripts.document(chat_id)
    assert doc["seal"]["last_index"] == 6 and doc["seal"]["final_hash"] == entries[-1]["hash"]
    assert doc["seal"]["public_key"] == records.signer.public_key
    assert verify_document(doc) is None and records.transcripts.verify_stored(chat_id) is None
    assert verify_document(json.loads(export.as_json(doc)), records.signer.public_key) is None


@pytest.mark.parametrize("tamper, expected", [
    (lambda es: es[2]["content"].update(body="Nothing happened"), "entry 3 altered"),
    (lambda es: es[1]["details"].update(seq=99), "entry 2 altered"),
    (lambda es: es[3].update(ts=es[3]["ts"] + 1), "entry 4 altered"),
    (lambda es: es.pop(2), "entry 3 removed"),
    (lambda es: es.pop(0), "entry 1 removed"),
    (lambda es: es.insert(2, es.pop(3)), "entry 3 reordered"),
    (lambda es: es.pop(), "entry 6 removed"),
])
def test_tampering_with_an_export_names_the_first_bad_entry(setup, tamper, expected):
    config, store, records, service = setup
    doc = records.transcripts.document(closed_chat(store, records, service))
    bad = copy.deepcopy(doc)
    tamper(bad["entries"])
    problem = verify_document(bad, records.signer.public_key)
    assert problem is not None and str(problem).startswith(expected), problem


def test_rehashing_a_whole_forged_chain_still_fails_the_signature(setup):
    config, store, records, service = setup
    doc = records.transcripts.document(closed_chat(store, records, service))
    forged = copy.deepcopy(doc)
    prev = chain.GENESIS
    for e in forged["entries"]:
        if e["kind"] == "message.visitor":
            e["content"]["body"] = "forged"
            e["content_hash"] = chain.content_hash(e["salt"], e["content"])
        e["prev"] = prev
        e["hash"] = prev = chain.entry_hash(e, chain.CHAT_FIELDS)
    assert str(verify_document(forged)).startswith("entry 6 altered: the chain's final hash is not the one")
    forged["seal"]["final_hash"] = prev                                  # ...and with a new final hash
    assert "signature does not verify" in str(verify_document(forged))


def test_a_signature_from_another_key_fails(setup, tmp_path):
    config, store, records, service = setup
    doc = records.transcripts.document(closed_chat(store, records, service))
    other = Signer.load_or_create(tmp_path / "other.key")
    assert "another key" in str(verify_document(doc, other.public_key))
    resigned = copy.deepcopy(doc)          # an impostor re-signs with their own key and embeds it
    from bridge.records.signing import seal_payload
    resigned["seal"]["signature"] = other.sign(seal_payload(doc["chat"]["id"], 6, doc["seal"]["final_hash"]))
    resigned["seal"]["public_key"] = other.public_key
    assert verify_document(resigned) is None                        # self-consistent on its own key …
    assert "another key" in str(verify_document(resigned, records.signer.public_key))   # … but not ours
    resigned["seal"]["public_key"] = records.signer.public_key       # claiming our key does not help
    assert "does not verify" in str(verify_document(resigned, records.signer.public_key))


def test_tampering_in_the_store_is_detected_and_named(setup):
    config, store, records, service = setup
    chat_id = closed_chat(store, records, service)
    store.db.execute("UPDATE chat_records SET content = ? WHERE chat_id = ? AND idx = 4",
                     [json.dumps({"body": "I made it up"}), chat_id])
    assert str(records.transcripts.verify_stored(chat_id)).startswith("entry 4 altered")
    store.db.execute("UPDATE chat_records SET content = ? WHERE chat_id = ? AND idx = 4",
                     [json.dumps({"body": "The central one, at noon"}), chat_id])
    assert records.transcripts.verify_stored(chat_id) is None
    store.db.execute("DELETE FROM chat_records WHERE chat_id = ? AND idx = 2", [chat_id])
    assert str(records.transcripts.verify_stored(chat_id)).startswith("entry 2 removed")
    store.db.execute("DELETE FROM record_seals WHERE chat_id = ?", [chat_id])
    assert "entry 2 removed" in str(records.transcripts.verify_stored(chat_id))


def test_a_closed_chat_without_its_seal_fails(setup):
    config, store, records, service = setup
    chat_id = closed_chat(store, records, service)
    store.db.execute("DELETE FROM record_seals WHERE chat_id = ?", [chat_id])
    assert "not signed" in str(records.transcripts.verify_stored(chat_id))


def test_erasing_content_keeps_the_chain_and_seal_verifiable(setup):
    config, store, records, service = setup
    chat_id = closed_chat(store, records, service)
    store.chat_records.erase_content(chat_id)
    doc = records.transcripts.document(chat_id)
    assert all("content" not in e for e in doc["entries"])
    assert verify_document(doc, records.signer.public_key) is None
    assert "Alex" not in export.as_html(doc, "Test") and export.ERASED in export.as_text(doc, "Test")


def test_audit_chain_verifies_names_tampering_and_survives_pruning(setup):
    config, store, records, service = setup
    for i in range(5):
        records.audit("chat.claim", f"@o{i}:p", target=f"chat-{i}", origin="!room:p")
    assert records.trail.verify() is None
    store.db.execute("UPDATE audit_log SET actor = '@mallory:p' WHERE idx = 3")
    assert str(records.trail.verify()).startswith("entry 3 altered")
    store.db.execute("UPDATE audit_log SET actor = '@o2:p' WHERE idx = 3")
    store.db.execute("UPDATE audit_log SET ts = 0 WHERE idx <= 2")           # two entries from long ago
    assert str(records.trail.verify()).startswith("entry 1 altered")          # (changing ts is tampering too)
    store.db.execute("DELETE FROM audit_log WHERE idx <= 2")
    assert str(records.trail.verify()).startswith("entry 1 removed")          # deleting them, not via prune


def test_audit_prune_keeps_the_rest_verifiable(setup):
    config, store, records, service = setup
    for i in range(4):
        records.audit("chat.claim", f"@o{i}:p")
    store.db.execute("UPDATE audit_log SET ts = 1000 WHERE idx <= 2")   # (simulate age; re-hash those two)
    prev = chain.GENESIS
    for e in records.trail.entries():
        e["prev"] = prev
        prev = chain.entry_hash(e, chain.AUDIT_FIELDS)
        store.db.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE idx = ?", [e["prev"], prev, e["index"]])
    assert records.trail.verify() is None
    assert records.trail.prune(365) == 2
    assert [e["index"] for e in records.trail.entries()] == [3, 4] and records.trail.verify() is None
    records.audit("after", "@x:p")
    assert records.trail.verify() is None


def test_signing_key_is_created_private_and_reused(tmp_path):
    path = tmp_path / "secrets" / "records.key"
    first = Signer.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Signer.load_or_create(path).public_key == first.public_key
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyError, match=r"can be read by other users \(mode 0644\); run: chmod 600 "):
        Signer.load_or_create(path)


def test_an_entry_joins_the_callers_transaction(setup):
    config, store, records, service = setup
    chat, _ = service.open("general", None, None)
    with pytest.raises(RuntimeError):
        with store.db.transaction():
            records.chat_event(chat.id, "tag", "@o:p", tag="theft")
            raise RuntimeError("the change failed")
    assert [e["kind"] for e in records.transcripts.entries(chat.id)] == ["queued"]


def test_exports_are_readable_and_script_free(setup):
    config, store, records, service = setup
    chat_id = closed_chat(store, records, service)
    store.db.execute("UPDATE chat_records SET content = ? WHERE idx = 2", [json.dumps({"body": "<script>x</script>"})])
    page = records.export(chat_id, "html", actor="@sup:p", origin="cli", service_name="Test")
    assert "<script" not in page and "&lt;script&gt;" in page and "Officer One" in page and "OFFICERDEV" in page
    txt = records.export(chat_id, "txt", actor="@sup:p", origin="cli", service_name="Test")
    assert "Internal note (never shown to the citizen): Check CCTV" in txt
    assert "Agency: Central Police" in txt and "Topic: General enquiry" in txt
    assert [e["action"] for e in records.trail.entries()][-2:] == ["transcript.exported", "transcript.exported"]


def test_search_finds_a_phrase_with_filters_and_is_audited(setup):
    config, store, records, service = setup
    chat_id = closed_chat(store, records, service)
    other, _ = service.open("lost-property", None, None)
    service.visitor_message(other, "x", "I lost my bike lights")
    hits = records.search("bike", actor="@sup:p", origin="cli")
    assert {h.chat_id for h in hits} == {chat_id, other.id}
    assert [h.chat_id for h in records.search("stolen outside", actor="@sup:p", origin="cli")] == [chat_id]
    assert [h.chat_id for h in records.search("bike", actor="@sup:p", origin="cli", topic="lost-property")] == [other.id]
    assert records.search("bike", actor="@sup:p", origin="cli", officer="@officer1:police.example")[0].chat_id == chat_id
    assert records.search('bike" OR "x', actor="@sup:p", origin="cli") == []       # input is never FTS syntax
    searched = [e for e in records.trail.entries() if e["action"] == "transcript.searched"]
    assert len(searched) == 5 and searched[0]["details"]["query"] == "bike"


def test_search_by_date_tag_and_rating(setup):
    config, store, records, service = setup
    chat_id = closed_chat(store, records, service)
    records.chat_event(chat_id, "tag", "@officer1:police.example", tag="theft")
    store.feedback.add(chat_id, 2, None)
    created = store.chats.get(chat_id).created_ts
    find = lambda **f: [h.chat_id for h in records.search("library", actor="@sup:p", origin="cli", **f)]  # noqa: E731
    assert chat_id in find(since_ms=created, until_ms=created + 1)
    assert find(since_ms=created + 1) == [] and find(until_ms=created) == []
    assert chat_id in find(tag="theft") and find(tag="fraud") == []
    assert chat_id in find(rating=2) and find(rating=5) == []
    assert find(agency="nightshift") == []


def test_a_changed_configuration_is_audited_at_start_up(setup):
    config, store, records, service = setup
    records.config_loaded(config)
    records.config_loaded(config)
    config.values["records.retention_days"] = 90
    records.config_loaded(config)
    trail = [(e["action"], e["details"]) for e in records.trail.entries()]
    assert [a for a, _ in trail] == ["config.loaded", "config.loaded", "config.changed", "config.loaded"]
    assert trail[2][1]["previous_sha256"] == trail[0][1]["config_sha256"] != trail[2][1]["config_sha256"]
    assert config.get("appservice.hs_token") not in json.dumps(trail)


@pytest.mark.parametrize("damage", [
    lambda d: d["seal"].update(last_index="six"),
    lambda d: d["entries"][1].update(ts=float("nan")),
    lambda d: d["entries"][1].update(salt="not hex"),
    lambda d: d["entries"].__setitem__(2, "not an entry"),
    lambda d: d.update(seal=["not", "a", "seal"]),
    lambda d: d["seal"].update(signature="@@@"),
    lambda d: d.update(entries={}),
])
def test_a_malformed_file_is_reported_never_a_crash(setup, damage):
    config, store, records, service = setup
    doc = copy.deepcopy(records.transcripts.document(closed_chat(store, records, service)))
    damage(doc)
    problem = verify_document(doc, records.signer.public_key)
    assert isinstance(problem, (str, chain.Problem)) and str(problem)


def test_system_events_read_as_sentences_and_erased_text_as_erased():
    assert export.describe({"kind": "claimed", "details": {"how": "claim"}}) == "Claimed the chat."
    assert export.describe({"kind": "closed", "details": {"by": "timeout"}, "content": {"reason": "idle"},
                            "content_hash": "h"}) == "Chat closed automatically. Reason: idle"
    moved = {"kind": "transferred", "details": {"to": "night", "from_agency": "central", "to_agency": "night"},
             "content": None, "content_hash": "h"}
    assert export.describe(moved).endswith("Note: [erased]")
    assert export.describe({"kind": "emergency", "details": {"keyword": "knife"}}) == "Emergency (keyword: knife)."


def _rewrite(store: Store, records: Records, idx: int, actor: str) -> None:
    """What someone with write access to the database (but not the records key) can do: change an entry and
    recompute every hash after it, so the chain itself verifies again."""
    store.db.execute("UPDATE audit_log SET actor = ? WHERE idx = ?", [actor, idx])
    entries = records.trail.entries()
    prev = entries[0]["prev"]
    for e in entries:
        e["prev"] = prev
        prev = chain.entry_hash(e, chain.AUDIT_FIELDS)
        store.db.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE idx = ?", [e["prev"], prev, e["index"]])


def test_signed_checkpoints_catch_a_chain_rewritten_with_fresh_hashes(setup):
    config, store, records, service = setup
    for i in range(3):
        records.audit("chat.claim", f"@o{i}:p", target=f"chat-{i}")
    first = records.trail.checkpoint()
    assert first is not None and first.idx == 3 and records.trail.checkpoint() is None   # nothing new: no second
    for i in range(3, 6):
        records.audit("chat.note", f"@o{i}:p", target=f"chat-{i}")
    assert records.trail.checkpoint().idx == 6
    records.audit("chat.tag", "@o6:p")                                 # after the last checkpoint
    assert records.trail.verify() is None

    _rewrite(store, records, 5, "@mallory:p")
    assert chain.verify(records.trail.entries(), chain.AUDIT_FIELDS) is None, "the hashes alone no longer tell"
    problem = records.trail.verify()
    assert problem is not None and problem.what == "rewritten" and problem.index == 4, problem
    assert "entries from 4 on cannot be trusted" in str(problem)

    _rewrite(store, records, 5, "@o4:p")                               # put back as it was: holds again
    assert records.trail.verify() is None
    _rewrite(store, records, 2, "@mallory:p")                          # before the first checkpoint
    assert records.trail.verify().index == 1


def test_a_checkpoint_not_signed_by_this_bridge_or_a_signed_tail_removed_is_named(setup, tmp_path: Path):
    config, store, records, service = setup
    for i in range(4):
        records.audit("chat.claim", f"@o{i}:p")
    c = records.trail.checkpoint()
    other = Signer.load_or_create(tmp_path / "other.key")
    store.db.execute("UPDATE audit_checkpoints SET signature = ?, public_key = ? WHERE idx = ?",
                     [other.sign(b"anything"), other.public_key, c.idx])
    problem = records.trail.verify()
    assert problem is not None and problem.what == "unverified" and problem.index == 1, problem
    store.db.execute("DELETE FROM audit_checkpoints")
    records.trail.checkpoint()
    store.db.execute("DELETE FROM audit_log WHERE idx >= 3")           # the signed tail, chain still linked
    assert chain.verify(records.trail.entries(), chain.AUDIT_FIELDS) is None
    problem = records.trail.verify()
    assert problem is not None and problem.what == "removed" and "entry 4" in str(problem), problem


def test_checkpoints_of_pruned_entries_are_not_held_against_the_rest(setup):
    config, store, records, service = setup
    for i in range(4):
        records.audit("chat.claim", f"@o{i}:p")
    records.trail.checkpoint()                                         # signs entry 4
    store.db.execute("UPDATE audit_log SET ts = 1000 WHERE idx <= 4")
    _rewrite(store, records, 1, "@o0:p")                               # (re-hash after the ts change)
    store.db.execute("DELETE FROM audit_checkpoints")
    records.trail.checkpoint()
    records.audit("later", "@x:p")
    assert records.trail.prune(365) == 4
    assert records.trail.verify() is None
