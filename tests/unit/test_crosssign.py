"""Cross-signing helpers checked against signedjson/canonicaljson (PyNaCl-based)."""

import base64
import copy
import os

import pytest
from canonicaljson import encode_canonical_json
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json

from bridge.matrix.crosssign import (
    CrossSigningIdentity,
    SigningKey,
    canonical_json,
    unpadded_b64,
    verify_json,
)

USER = "@visitor_42:example.org"


def _nacl_verify(obj: dict, signer: str, public_key: str) -> None:
    """Independent check: raises SignatureVerifyException if invalid."""
    raw = base64.b64decode(public_key + "=" * (-len(public_key) % 4))
    verify_key = decode_verify_key_bytes("ed25519:" + public_key, raw)
    verify_signed_json(obj, signer, verify_key)


@pytest.mark.parametrize(
    "obj",
    [
        {"b": 1, "a": 2},
        {"one": 1, "two": "Two"},
        {"日本語": "日本語", "é": "\u00e9", "emoji": "\U0001f600", "ctl": "a\nb\t\"\\"},
        {"nested": {"z": [3, {"y": None, "x": True}], "a": {"c": False, "b": []}}},
        {"ints": [0, -1, 2**53 - 1, -(2**53) + 1], "empty": {}},
        {"sep": "\u2028\u2029", "nul": "\u0000", "slash": "/"},
        [1, "a", {"k": "v"}],
    ],
)
def test_canonical_json_matches_canonicaljson(obj):
    assert canonical_json(obj) == encode_canonical_json(obj)


def test_canonical_json_is_utf8_without_spaces():
    out = canonical_json({"b": "ü", "a": [1, 2]})
    assert out == '{"a":[1,2],"b":"ü"}'.encode("utf-8")


def test_unpadded_b64():
    assert unpadded_b64(b"") == ""
    assert unpadded_b64(b"a") == "YQ"
    assert unpadded_b64(b"ab") == "YWI"
    assert unpadded_b64(b"abc") == "YWJj"
    assert unpadded_b64(bytes(32)) == "A" * 43


def test_sign_json_verifies_with_signedjson_and_ours():
    key = SigningKey.generate()
    obj = {"user_id": USER, "keys": {"x": "y"}, "text": "héllo", "n": 7}
    original = copy.deepcopy(obj)
    signed = key.sign_json(obj, USER)

    assert obj == original, "input must not be mutated"
    assert set(signed["signatures"][USER]) == {"ed25519:" + key.public_key}
    _nacl_verify(signed, USER, key.public_key)
    assert verify_json(signed, USER, key.public_key)


def test_sign_json_keeps_existing_signatures_and_unsigned():
    key = SigningKey.generate()
    other = SigningKey.generate()
    obj = other.sign_json({"a": 1}, "@other:example.org")
    obj["unsigned"] = {"device_display_name": "phone"}

    signed = key.sign_json(obj, USER)

    assert signed["unsigned"] == {"device_display_name": "phone"}
    assert "@other:example.org" in signed["signatures"]
    # Both signatures are over the same input, so both still verify.
    _nacl_verify(signed, USER, key.public_key)
    _nacl_verify(signed, "@other:example.org", other.public_key)
    assert verify_json(signed, "@other:example.org", other.public_key)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda o: o.__setitem__("n", 8),
        lambda o: o.__setitem__("extra", True),
        lambda o: o["keys"].__setitem__("x", "z"),
        lambda o: o.pop("text"),
    ],
)
def test_tampered_object_fails(tamper):
    key = SigningKey.generate()
    signed = key.sign_json({"keys": {"x": "y"}, "text": "t", "n": 7}, USER)
    tamper(signed)
    assert not verify_json(signed, USER, key.public_key)
    with pytest.raises(SignatureVerifyException):
        _nacl_verify(signed, USER, key.public_key)


def test_verify_json_rejects_wrong_key_signer_and_garbage():
    key = SigningKey.generate()
    signed = key.sign_json({"a": 1}, USER)
    assert not verify_json(signed, USER, SigningKey.generate().public_key)
    assert not verify_json(signed, "@someone:else", key.public_key)
    assert not verify_json({"a": 1}, USER, key.public_key)
    bad = copy.deepcopy(signed)
    bad["signatures"][USER]["ed25519:" + key.public_key] = "!!notbase64"
    assert not verify_json(bad, USER, key.public_key)
    short = copy.deepcopy(signed)
    short["signatures"][USER]["ed25519:" + key.public_key] = "AAAA"
    assert not verify_json(short, USER, key.public_key)


def test_unsigned_changes_do_not_break_signature():
    key = SigningKey.generate()
    signed = key.sign_json({"a": 1}, USER)
    signed["unsigned"] = {"age": 5}
    assert verify_json(signed, USER, key.public_key)


def test_from_seed_round_trips():
    key = SigningKey.generate()
    assert len(key.seed) == 32
    again = SigningKey.from_seed(key.seed)
    assert again.public_key == key.public_key
    assert again.seed == key.seed
    # Ed25519 is deterministic: same seed, same signature.
    assert again.sign_json({"a": 1}, USER) == key.sign_json({"a": 1}, USER)
    seed = os.urandom(32)
    assert SigningKey.from_seed(seed).seed == seed
    assert len(base64.b64decode(key.public_key + "=")) == 32
    with pytest.raises(ValueError):
        SigningKey.from_seed(b"short")


def test_repr_hides_seed():
    key = SigningKey.generate()
    assert key.seed.hex() not in repr(key)
    assert key.public_key in repr(key)


def test_upload_body_shape_and_master_signatures():
    ident = CrossSigningIdentity.generate(USER)
    body = ident.upload_body()
    assert set(body) == {"master_key", "self_signing_key", "user_signing_key"}

    pubs = {
        "master_key": (ident.master.public_key, "master"),
        "self_signing_key": (ident.self_signing.public_key, "self_signing"),
        "user_signing_key": (ident.user_signing.public_key, "user_signing"),
    }
    assert len({p for p, _ in pubs.values()}) == 3
    for field, (pub, usage) in pubs.items():
        assert body[field]["user_id"] == USER
        assert body[field]["usage"] == [usage]
        assert body[field]["keys"] == {"ed25519:" + pub: pub}

    assert "signatures" not in body["master_key"]
    for field in ("self_signing_key", "user_signing_key"):
        sub = body[field]
        assert set(sub["signatures"]) == {USER}
        assert set(sub["signatures"][USER]) == {"ed25519:" + ident.master.public_key}
        _nacl_verify(sub, USER, ident.master.public_key)
        assert verify_json(sub, USER, ident.master.public_key)


def test_sign_device_keeps_device_signature_adds_ours_drops_unsigned():
    ident = CrossSigningIdentity.generate(USER)
    device_key = SigningKey.generate()
    device = {
        "user_id": USER,
        "device_id": "PUPPETDEV",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            "curve25519:PUPPETDEV": unpadded_b64(os.urandom(32)),
            "ed25519:PUPPETDEV": device_key.public_key,
        },
    }
    # What /keys/query returns: self-signed by the device, with unsigned data.
    queried = device_key.sign_json(device, USER)
    queried["signatures"][USER]["ed25519:PUPPETDEV"] = queried["signatures"][USER].pop(
        "ed25519:" + device_key.public_key
    )
    queried["unsigned"] = {"device_display_name": "Visitor"}
    before = copy.deepcopy(queried)

    body = ident.sign_device(queried)

    assert queried == before, "input must not be mutated"
    assert list(body) == [USER]
    assert list(body[USER]) == ["PUPPETDEV"]
    signed = body[USER]["PUPPETDEV"]
    assert "unsigned" not in signed
    sigs = signed["signatures"][USER]
    assert set(sigs) == {"ed25519:PUPPETDEV", "ed25519:" + ident.self_signing.public_key}
    assert sigs["ed25519:PUPPETDEV"] == before["signatures"][USER]["ed25519:PUPPETDEV"]
    assert {k: v for k, v in signed.items() if k != "signatures"} == device

    _nacl_verify(signed, USER, ident.self_signing.public_key)
    assert verify_json(signed, USER, ident.self_signing.public_key)
    # The device's own signature is still valid (checked via its raw key).
    raw = base64.b64decode(device_key.public_key + "=")
    verify_signed_json(signed, USER, decode_verify_key_bytes("ed25519:PUPPETDEV", raw))


def test_sign_device_rejects_other_users_device():
    ident = CrossSigningIdentity.generate(USER)
    with pytest.raises(ValueError):
        ident.sign_device({"user_id": "@other:example.org", "device_id": "D", "keys": {}})


def test_identity_is_frozen():
    ident = CrossSigningIdentity.generate(USER)
    with pytest.raises(AttributeError):
        ident.user_id = "@x:y"  # type: ignore[misc]
