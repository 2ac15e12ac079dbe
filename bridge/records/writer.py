"""``Records``: the real ``Journal`` (bridge/journal.py) — hash-chained transcripts and audit trail."""
from __future__ import annotations

import hashlib
import logging
from typing import Any

from ..config import Config
from ..store import Store
from ..store.chat_records import SearchHit
from ..store.chats import Chat
from . import export, training_case
from .audit import AuditTrail
from .chain import canonical
from .refusals import RepeatedRefusals
from .signing import Signer
from .transcripts import Transcripts

log = logging.getLogger(__name__)


class Records:
    """Writes every entry in a store transaction, joining the caller's when there is one."""

    def __init__(self, store: Store, signer: Signer, names: dict[str, str] | None = None,
                 refusal_window_seconds: float = 3600) -> None:
        self.store, self.signer = store, signer
        self.transcripts = Transcripts(store, signer, names)
        self.trail = AuditTrail(store, signer)
        self.refusals = RepeatedRefusals(store, self.trail, refusal_window_seconds)

    @classmethod
    def open(cls, config: Config, store: Store) -> "Records":
        names = {**{f"agency:{a.id}": a.name for a in config.agencies},
                 **{f"topic:{t.id}": t.label for t in config.topics}}
        return cls(store, Signer.load_or_create(config.path("records.signing_key_path")), names,
                   config.get("records.refusal_window_seconds"))

    def chat_event(self, chat_id: str, kind: str, actor: str | None, **details: Any) -> None:
        self.transcripts.append(chat_id, kind, actor, details)

    def audit(self, action: str, actor: str, outcome: str = "ok", *, target: str | None = None,
              origin: str | None = None, **details: Any) -> None:
        self.trail.append(action, actor, outcome, target, origin, details)

    def refused(self, action: str, actor: str, outcome: str = "refused", *, source: str | None,
                target: str | None = None, origin: str | None = None, reason: str, **details: Any) -> None:
        self.refusals.refused(action, actor, outcome, source=source, target=target, origin=origin, reason=reason,
                              details=details)

    def config_loaded(self, config: Config, origin: str = "start-up") -> None:
        """Audit the configuration in force (by hash), and a change since the last start."""
        fingerprint = config_fingerprint(config)
        earlier = self.store.audit_log.entries(action="config.loaded")
        previous = earlier[-1].details.get("config_sha256") if earlier else None
        with self.store.db.transaction():
            if previous and previous != fingerprint:
                self.audit("config.changed", "bridge", origin=origin, config_sha256=fingerprint,
                           previous_sha256=previous)
            self.audit("config.loaded", "bridge", origin=origin, config_sha256=fingerprint,
                       public_key=self.signer.public_key)


    # ---- reading, for the CLI and the supervisor console (each read leaves an audit entry) ----------
    def find_chat(self, ref: str) -> Chat | None:
        """A chat by its ID or its number (what officers see: "Chat 1001")."""
        chat = self.store.chats.get(ref)
        if chat is None and ref.strip().isdigit():
            chat = self.store.chats.by_number(int(ref))
        return chat

    def search(self, phrase: str, *, actor: str, origin: str, **filters: Any) -> list[SearchHit]:
        """Full-text search over transcripts; filters: agency, topic, officer, since_ms, until_ms, tag, rating."""
        hits = self.store.chat_records.search(phrase, **filters)
        self.audit("transcript.searched", actor, origin=origin, query=phrase,
                   filters={k: v for k, v in filters.items() if v is not None} or None, results=len(hits))
        return hits

    def view(self, chat_id: str, *, actor: str, origin: str) -> dict[str, Any]:
        """The chat's full record (entries, seal) as a document; audited as a view."""
        doc = self.transcripts.document(chat_id)
        self.audit("transcript.viewed", actor, target=chat_id, origin=origin)
        return doc

    def export(self, chat_id: str, fmt: str, *, actor: str, origin: str, service_name: str) -> str:
        """The chat's record rendered as json, html or txt; audited as an export."""
        text = export.render(self.transcripts.document(chat_id), fmt, service_name)
        self.audit("transcript.exported", actor, target=chat_id, origin=origin, format=fmt)
        return text

    def training_case(self, chat_id: str, *, actor: str, origin: str) -> str:
        """The chat as an anonymised training case (training_case.py); audited as its own kind of export."""
        text = training_case.render(self.transcripts.document(chat_id))
        self.audit("transcript.training_case", actor, target=chat_id, origin=origin)
        return text


def config_fingerprint(config: Config) -> str:
    """SHA-256 of the configuration with every secret left out: changes show, secrets never do."""
    from ..config import SCHEMA

    secret = {k.path for k in SCHEMA if k.secret}
    shown = {k: v for k, v in config.values.items() if k not in secret}
    return hashlib.sha256(canonical(shown)).hexdigest()
