"""An Olm message a device has handled is known again when the homeserver hands it over a second time."""
from __future__ import annotations

from bridge.matrix.crypto import _olm_digest
from bridge.matrix.homeserver import MEGOLM_ALGORITHM, OLM_ALGORITHM
from bridge.store import Store


def olm(body: str, sender_key: str = "officer-curve") -> dict:
    return {"type": "m.room.encrypted", "sender": "@officer:p",
            "content": {"algorithm": OLM_ALGORITHM, "sender_key": sender_key,
                        "ciphertext": {"puppet-curve": {"type": 0, "body": body}}}}


def test_an_olm_message_is_known_by_its_sender_key_and_ciphertext():
    assert _olm_digest(olm("AwgA")) == _olm_digest(olm("AwgA"))
    assert _olm_digest(olm("AwgA")) != _olm_digest(olm("AwgB"))
    assert _olm_digest(olm("AwgA")) != _olm_digest(olm("AwgA", sender_key="another-device"))
    megolm = {"type": "m.room.encrypted", "content": {"algorithm": MEGOLM_ALGORITHM, "ciphertext": "x"}}
    assert _olm_digest(megolm) is None
    assert _olm_digest({"type": "m.dummy", "content": {}}) is None
    assert _olm_digest({"type": "m.room.encrypted", "content": {"algorithm": OLM_ALGORITHM, "ciphertext": {}}}) is None


def test_what_a_device_handled_is_remembered_for_it_alone_until_it_goes_or_grows_old(tmp_path):
    store = Store.open(tmp_path / "p.db")
    try:
        first, second = _olm_digest(olm("one")), _olm_digest(olm("two"))
        assert first and second
        store.puppets.add("@webchat_a:p", "DA", "chat-a")
        store.puppets.add("@webchat_b:p", "DB", "chat-b")
        store.puppets.note_olm_taken("@webchat_a:p", [first])
        store.puppets.note_olm_taken("@webchat_a:p", [first])                 # handled twice: noted once
        assert store.puppets.olm_taken("@webchat_a:p", [first, second]) == {first}
        assert store.puppets.olm_taken("@webchat_b:p", [first, second]) == set()
        assert store.puppets.olm_taken("@webchat_a:p", []) == set()
        store.puppets.note_olm_taken("@webchat_b:p", [second])
        store.puppets.delete("@webchat_b:p")                                    # a retired puppet's go with it
        assert store.puppets.olm_taken("@webchat_b:p", [second]) == set()
        assert store.puppets.forget_olm_taken_before(0) == 0
        assert store.puppets.forget_olm_taken_before(2 ** 62) == 1
        assert store.puppets.olm_taken("@webchat_a:p", [first]) == set()
    finally:
        store.close()
