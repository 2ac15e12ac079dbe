"""The Megolm message number read from a ciphertext's header (bridge/matrix/crypto.megolm_position), against
real Megolm sessions (vodozemac, which nio encrypts with): the bridge keeps an officer's messages in order by it."""
from __future__ import annotations

import vodozemac

from bridge.matrix.crypto import megolm_position


def _event(session: vodozemac.GroupSession, ciphertext: str, algorithm: str = "m.megolm.v1.aes-sha2") -> dict:
    return {"type": "m.room.encrypted", "content": {"algorithm": algorithm, "session_id": session.session_id,
                                                    "sender_key": "k", "device_id": "D", "ciphertext": ciphertext}}


def _b64(message: object) -> str:
    return message.to_base64() if hasattr(message, "to_base64") else str(message)


def test_each_message_of_a_session_is_numbered_as_it_was_encrypted():
    session = vodozemac.GroupSession()
    for n in range(300):                          # past 127: the number takes two bytes of the header
        assert megolm_position(_event(session, _b64(session.encrypt(b"x" * (n % 7))))) == (session.session_id, n)


def test_anything_else_has_no_number():
    session = vodozemac.GroupSession()
    ciphertext = _b64(session.encrypt(b"hello"))
    assert megolm_position(_event(session, ciphertext, algorithm="m.olm.v1.curve25519-aes-sha2")) is None
    assert megolm_position(_event(session, "not base64 at all!")) is None
    assert megolm_position(_event(session, "")) is None
    assert megolm_position({"type": "m.room.message", "content": {"body": "hi"}}) is None
    assert megolm_position({"type": "m.room.encrypted", "content": "nonsense"}) is None
    assert megolm_position({"type": "m.room.encrypted"}) is None
