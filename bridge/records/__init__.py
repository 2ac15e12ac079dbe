"""Records: tamper-evident transcripts and audit trail, retention, legal hold, erasure, search.

    chain.py        hashes and chain verification (pure)
    signing.py      the bridge's Ed25519 key; seals over closed chats' final hashes
    transcripts.py  each chat's chain, its seal, the exportable document, offline verification
    audit.py        the bridge's audit chain
    journal.py      ``Records``: the ``Journal`` the rest of the bridge writes through
"""
from .journal import Records

__all__ = ["Records"]
