"""The bridge's Ed25519 signing key: created on first start (file mode 0600), signs closed chats' final hashes.

Uses ``cryptography`` (already installed with matrix-nio/synapse's dependencies). The seal signs
the canonical JSON of {"chat", "last_index", "final_hash"}; keys are shown as unpadded base64 of
the raw 32-byte public key, the same form Matrix uses for its ed25519 keys.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..config import ConfigError
from ..private_files import exposure
from .chain import canonical


class SigningKeyError(ConfigError):
    pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    text = text.strip()
    if text.startswith("ed25519:"):
        text = text[len("ed25519:"):]
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def seal_payload(chat_id: str, last_index: int, final_hash: str) -> bytes:
    return canonical({"chat": chat_id, "final_hash": final_hash, "last_index": last_index})


class Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = b64(raw)

    @classmethod
    def load_or_create(cls, path: Path) -> "Signer":
        """Read the key file, or create it (0600, never overwriting) when it does not exist yet."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass                                   # another process made it first: use theirs
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
        if problem := exposure(path, "records signing key"):
            raise SigningKeyError(problem)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as e:
            raise SigningKeyError(f"records signing key {path} is not a PEM Ed25519 private key: {e}")
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"records signing key {path} is not an Ed25519 key")
        return cls(key)

    def sign(self, payload: bytes) -> str:
        return b64(self._key.sign(payload))


def check_signature(public_key: str, payload: bytes, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(unb64(public_key)).verify(unb64(signature), payload)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def seal_document(chat_id: str, last_index: int, final_hash: str, signature: str, public_key: str,
                  ts: int) -> dict[str, Any]:
    return {"chat": chat_id, "last_index": last_index, "final_hash": final_hash, "signature": signature,
            "public_key": public_key, "algorithm": "ed25519", "signed_ts": ts}
