"""Each chat's record: append hash-chained entries, seal (sign) the chain when the chat closes, read it back.

Entry kinds: message.visitor, message.officer, note, attachment, and system events (queued,
officer.joined, claimed, assigned, transferred, closed, priority, tag, emergency, erased …).
``append`` must run inside the store transaction of the change it records (the journal opens
one; nested calls become savepoints).
"""
from __future__ import annotations

import time
from typing import Any

from ..store import Store
from ..store.chat_records import ChatRecord
from ..store.record_seals import Seal
from . import chain
from .signing import Signer, check_signature, seal_document, seal_payload

FORMAT = "precinct-transcript"


def now_ms() -> int:
    return int(time.time() * 1000)


def entry_dict(r: ChatRecord) -> dict[str, Any]:
    """The entry as exported and verified: hashed fields, hash, and content/salt while not erased."""
    e: dict[str, Any] = {"v": chain.VERSION, "chat": r.chat_id, "index": r.idx, "ts": r.ts, "kind": r.kind,
                         "actor": r.actor, "details": r.details, "content_hash": r.content_hash,
                         "prev": r.prev_hash, "hash": r.hash}
    if r.content is not None:
        e["content"], e["salt"] = r.content, r.salt
    if r.erased_ts is not None:
        e["erased_ts"] = r.erased_ts
    return e


def _search_text(content: dict[str, Any] | None) -> str | None:
    if not content:
        return None
    return " ".join(str(v) for k, v in sorted(content.items()) if isinstance(v, (str, int)))


class Transcripts:
    def __init__(self, store: Store, signer: Signer, names: dict[str, str] | None = None) -> None:
        self.store, self.signer = store, signer
        self.names = names or {}             # "agency:<id>" / "topic:<id>" → what people call them

    def append(self, chat_id: str, kind: str, actor: str | None, details: dict[str, Any]) -> ChatRecord:
        public, personal = chain.split_personal(details)
        with self.store.db.transaction():
            last = self.store.chat_records.last(chat_id)
            index, prev = (last[0] + 1, last[1]) if last else (1, chain.GENESIS)
            salt = chain.new_salt() if personal else None
            c_hash = chain.content_hash(salt, personal) if personal and salt else None
            entry = {"v": chain.VERSION, "chat": chat_id, "index": index, "ts": now_ms(), "kind": kind,
                     "actor": actor, "details": public, "content_hash": c_hash, "prev": prev}
            h = chain.entry_hash(entry, chain.CHAT_FIELDS)
            record = ChatRecord(chat_id, index, entry["ts"], kind, actor, public, personal, salt, c_hash, prev, h)
            self.store.chat_records.add(record, _search_text(personal))
            # A closed chat's record is signed; anything recorded after (a late event, an erasure) re-signs it.
            if kind == "closed" or self.store.record_seals.get(chat_id) is not None:
                self._seal(chat_id, index, h)
        return record

    def _seal(self, chat_id: str, last_index: int, final_hash: str) -> None:
        signature = self.signer.sign(seal_payload(chat_id, last_index, final_hash))
        self.store.record_seals.put(Seal(chat_id, last_index, final_hash, signature, self.signer.public_key,
                                         now_ms()))

    def entries(self, chat_id: str) -> list[dict[str, Any]]:
        return [entry_dict(r) for r in self.store.chat_records.entries(chat_id)]

    def document(self, chat_id: str) -> dict[str, Any]:
        """The full exportable record of one chat: metadata, chain, seal (or null while open)."""
        chat = self.store.chats.get(chat_id)
        seal = self.store.record_seals.get(chat_id)
        hold = self.store.legal_holds.get(chat_id)
        return {
            "format": FORMAT, "version": chain.VERSION,
            "chat": {"id": chat_id, "number": chat.number if chat else None, "agency": chat.agency if chat else None,
                     "topic": chat.topic if chat else None, "state": chat.state if chat else None,
                     "agency_name": self.names.get(f"agency:{chat.agency}") if chat else None,
                     "topic_label": self.names.get(f"topic:{chat.topic}") if chat else None,
                     "officer": chat.officer if chat else None, "created_ts": chat.created_ts if chat else None,
                     "closed_ts": chat.closed_ts if chat else None,
                     "legal_hold": {"reason": hold.reason, "by": hold.actor, "ts": hold.ts} if hold else None},
            "entries": self.entries(chat_id),
            "seal": seal_document(seal.chat_id, seal.last_idx, seal.final_hash, seal.signature, seal.public_key,
                                  seal.ts) if seal else None,
            "exported_ts": now_ms(),
        }

    def verify_stored(self, chat_id: str) -> chain.Problem | str | None:
        """Check the stored chain (and seal) of one chat: None when intact."""
        doc = self.document(chat_id)
        # An open chat has no seal yet; a closed one without its seal is caught by the chat's state.
        return verify_document(doc, self.signer.public_key if doc["seal"] else None)


def verify_document(doc: dict[str, Any], public_key: str | None = None) -> chain.Problem | str | None:
    """Check an exported transcript offline: the chain, then the seal. A text or Problem says what is wrong.

    ``public_key``: the key the seal must be signed with; without it the key in the document is used
    (which proves integrity, not origin — compare it with `python -m bridge records public-key`).
    """
    try:
        return _verify_document(doc, public_key)
    except (TypeError, ValueError, KeyError, AttributeError) as e:     # a hand-edited or foreign file
        return f"the file is malformed ({type(e).__name__}: {e})"


def _verify_document(doc: dict[str, Any], public_key: str | None) -> chain.Problem | str | None:
    if public_key:
        public_key = public_key.strip().removeprefix("ed25519:").rstrip("=")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("entries"), list):
        return "not a Precinct transcript export (format/entries missing)"
    entries = doc["entries"]
    if not all(isinstance(e, dict) for e in entries):
        return "entries must be JSON objects"
    chat_id = (doc.get("chat") or {}).get("id")
    for e in entries:
        if e.get("chat") != chat_id and isinstance(e.get("index"), int):
            return chain.Problem(e["index"], "altered", f"it belongs to another chat ({e.get('chat')!r})")
    seal = doc.get("seal")
    problem = chain.verify(entries, chain.CHAT_FIELDS,
                           expected_last=seal.get("last_index") if isinstance(seal, dict) else None)
    if problem:
        return problem
    if seal is None:
        if public_key:
            return "the record is not signed (it was exported while the chat was open), so its origin cannot be checked"
        return None if (doc.get("chat") or {}).get("state") != "closed" else "the chat is closed but its record is not signed"
    if not isinstance(seal, dict):
        return "the seal is malformed"
    if seal.get("chat") != chat_id:
        return "the seal is for another chat"
    last_index = len(entries)
    if seal.get("last_index") != last_index:
        return chain.Problem(seal.get("last_index", 0) + 1, "inserted",
                             f"the signed chain ends at entry {seal.get('last_index')}, this copy at {last_index}")
    if seal.get("final_hash") != chain.last_hash(entries):
        return chain.Problem(last_index, "altered", "the chain's final hash is not the one that was signed")
    key = public_key or seal.get("public_key")
    if not isinstance(key, str) or not isinstance(seal.get("signature"), str):
        return "the seal has no signature or key"
    if public_key and seal.get("public_key") != public_key:
        return "the seal was signed with another key than the one given"
    if not check_signature(key, seal_payload(chat_id, last_index, seal["final_hash"]), seal["signature"]):
        return "the signature does not verify with the given key"
    return None
