"""Per-puppet Matrix cross-signing identity (pure functions, no I/O).

Element marks messages from a device that its owner has not signed with a red
"unverified device" shield. Giving each visitor puppet its own cross-signing
identity (master, self-signing and user-signing keys) and signing its device
with the self-signing key removes that warning. The HTTP calls that upload the
bodies built here live elsewhere; this module only builds and signs JSON.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from dataclasses import dataclass
from typing import Any

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

_UNSIGNED_FIELDS = ("signatures", "unsigned")


def canonical_json(obj: Any) -> bytes:
    """Matrix canonical JSON: sorted keys, no whitespace, UTF-8 (the signing input)."""
    return json.dumps(
        obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


def unpadded_b64(data: bytes) -> str:
    """Standard base64 without '=' padding, as Matrix uses for keys and signatures."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _decode_unpadded_b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _signing_input(obj: dict) -> bytes:
    """Signatures cover the object minus its 'signatures' and 'unsigned' fields."""
    return canonical_json({k: v for k, v in obj.items() if k not in _UNSIGNED_FIELDS})


class SigningKey:
    """An Ed25519 key pair; the 32-byte seed is all that needs persisting."""

    def __init__(self, key: ECC.EccKey) -> None:
        if key.curve != "Ed25519" or not key.has_private():
            raise ValueError("SigningKey needs an Ed25519 private key")
        self._key = key
        self._signer = eddsa.new(key, "rfc8032")
        raw = key.public_key().export_key(format="raw")
        self.public_key: str = unpadded_b64(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ECC.generate(curve="Ed25519"))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        if len(seed) != 32:
            raise ValueError("Ed25519 seed must be 32 bytes")
        return cls(ECC.construct(curve="Ed25519", seed=seed))

    @property
    def seed(self) -> bytes:
        return self._key.seed

    @property
    def key_id(self) -> str:
        """The Matrix key id, 'ed25519:<unpadded base64 public key>'."""
        return "ed25519:" + self.public_key

    def sign_json(self, obj: dict, signer_user_id: str) -> dict:
        """Return a copy of obj with our signature added under signer_user_id.

        Existing signatures and 'unsigned' are kept in the output but are not
        part of the signed bytes, so other parties' signatures stay valid.
        """
        signature = unpadded_b64(self._signer.sign(_signing_input(obj)))
        signed = copy.deepcopy(obj)
        signed.setdefault("signatures", {}).setdefault(signer_user_id, {})[
            self.key_id
        ] = signature
        return signed

    def __repr__(self) -> str:  # never leak the seed into logs
        return f"SigningKey(public_key={self.public_key!r})"


def verify_json(obj: dict, signer_user_id: str, public_key: str) -> bool:
    """True if obj carries a valid signature by public_key for signer_user_id."""
    try:
        signature = obj["signatures"][signer_user_id]["ed25519:" + public_key]
        raw_key = _decode_unpadded_b64(public_key)
        verifier = eddsa.new(eddsa.import_public_key(raw_key), "rfc8032")
        verifier.verify(_signing_input(obj), _decode_unpadded_b64(signature))
        return True
    except (KeyError, TypeError, ValueError, binascii.Error):
        return False


@dataclass(frozen=True)
class CrossSigningIdentity:
    """A user's three cross-signing keys (master, self-signing, user-signing)."""

    user_id: str
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls, user_id: str) -> CrossSigningIdentity:
        return cls(user_id, SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def _key_object(self, key: SigningKey, usage: str) -> dict:
        return {
            "user_id": self.user_id,
            "usage": [usage],
            "keys": {key.key_id: key.public_key},
        }

    def upload_body(self) -> dict:
        """Body for POST /_matrix/client/v3/keys/device_signing/upload.

        The sub-keys are signed by the master key so that clients trusting the
        master key also trust them.
        """
        return {
            "master_key": self._key_object(self.master, "master"),
            "self_signing_key": self.master.sign_json(
                self._key_object(self.self_signing, "self_signing"), self.user_id
            ),
            "user_signing_key": self.master.sign_json(
                self._key_object(self.user_signing, "user_signing"), self.user_id
            ),
        }

    def sign_device(self, device_keys: dict) -> dict:
        """Body for POST /_matrix/client/v3/keys/signatures/upload for one device.

        device_keys is the device's entry from /keys/query; its own signature
        is kept, the self-signing signature is added and 'unsigned' dropped.
        """
        if device_keys.get("user_id") != self.user_id:
            raise ValueError("device belongs to another user")
        keys = {k: v for k, v in device_keys.items() if k != "unsigned"}
        signed = self.self_signing.sign_json(keys, self.user_id)
        return {self.user_id: {device_keys["device_id"]: signed}}
