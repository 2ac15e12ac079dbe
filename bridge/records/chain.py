"""Hash chains, pure: canonical JSON, entry hashes, salted content commitments, and verification.

An entry's hash is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of its hashed
fields, one of which is ``prev`` — the previous entry's hash (64 zeros for the first). Personal
content (message text, names) is not hashed directly: the entry carries ``content_hash`` =
SHA-256(salt ‖ canonical(content)) with a random 16-byte salt, so erasing content and salt leaves
the chain verifiable while the short texts cannot be guessed back from the hash.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

GENESIS = "0" * 64
VERSION = 1
# Details that are personal data: kept outside the hashed part, removed by an erasure.
PERSONAL = frozenset({"body", "text", "name", "filename", "display_name", "comment", "reason", "note"})
CHAT_FIELDS = ("v", "chat", "index", "ts", "kind", "actor", "details", "content_hash", "prev")
AUDIT_FIELDS = ("v", "index", "ts", "action", "actor", "outcome", "target", "origin", "details", "prev")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_personal(details: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(public details, personal content or None); None values are dropped."""
    public = {k: v for k, v in details.items() if v is not None and k not in PERSONAL}
    personal = {k: v for k, v in details.items() if v is not None and k in PERSONAL}
    return public, personal or None


def new_salt() -> str:
    return secrets.token_hex(16)


def content_hash(salt: str, content: dict[str, Any]) -> str:
    return sha256(bytes.fromhex(salt) + canonical(content))


def entry_hash(entry: dict[str, Any], fields: Sequence[str]) -> str:
    return sha256(canonical({f: entry.get(f) for f in fields}))


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain, named by entry index."""
    index: int
    what: str          # "altered" | "removed" | "reordered" | "inserted"
    detail: str

    def __str__(self) -> str:
        return f"entry {self.index} {self.what}: {self.detail}"


def verify(entries: Sequence[dict[str, Any]], fields: Sequence[str], *, anchor: str = GENESIS,
           first_index: int = 1, expected_last: int | None = None) -> Problem | None:
    """Check a chain in the order given; None when intact.

    Each entry is a dict with the hashed ``fields`` plus ``hash`` and optionally ``content`` and
    ``salt`` (absent once erased). ``anchor``/``first_index``: where the chain starts (a pruned
    audit log starts later). ``expected_last``: the index the chain must end at (a signed seal).
    """
    prev, expected = anchor, first_index
    indexes = [e.get("index") for e in entries]
    for pos, e in enumerate(entries):
        index = e.get("index")
        if index != expected:
            if not isinstance(index, int):
                return Problem(expected, "altered", "its index is missing or not a number")
            if index > expected:
                if expected in indexes[pos + 1:]:
                    return Problem(expected, "reordered", f"it appears after entry {index}")
                return Problem(expected, "removed", f"the chain jumps from entry {expected - 1} to {index}")
            if index in indexes[:pos]:
                return Problem(index, "inserted", f"a second entry {index} appears after entry {expected - 1}")
            return Problem(index, "reordered", f"it appears after entry {expected - 1}")
        if entry_hash(e, fields) != e.get("hash"):
            return Problem(index, "altered", "its content does not match its hash")
        if e.get("prev") != prev:
            return Problem(index, "altered" if pos else "removed",
                           "it does not link to the previous entry's hash" if pos
                           else "it does not link to the start of the chain")
        content, salt = e.get("content"), e.get("salt")
        if content is not None or salt is not None:
            if not (isinstance(salt, str) and isinstance(content, dict) and e.get("content_hash")) \
                    or _safe_content_hash(salt, content) != e.get("content_hash"):
                return Problem(index, "altered", "its text does not match the hash recorded for it")
        prev, expected = e["hash"], expected + 1
    if expected_last is not None and expected - 1 < expected_last:
        return Problem(expected, "removed", f"the signed chain ends at entry {expected_last}, "
                                            f"this copy at entry {expected - 1}")
    return None


def _safe_content_hash(salt: str, content: dict[str, Any]) -> str | None:
    try:
        return content_hash(salt, content)
    except ValueError:
        return None


def last_hash(entries: Iterable[dict[str, Any]], anchor: str = GENESIS) -> str:
    h = anchor
    for e in entries:
        h = e["hash"]
    return h
