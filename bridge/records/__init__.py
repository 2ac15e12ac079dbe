"""Records: tamper-evident transcripts and audit trail, retention, legal hold, erasure, search.

    chain.py        hashes and chain verification (pure)
    signing.py      the bridge's Ed25519 key; seals over closed chats' final hashes
    transcripts.py  each chat's chain, its seal, the exportable document, offline verification
    audit.py        the bridge's audit chain (pruned past its retention, still verifiable)
    writer.py       ``Records``: the ``Journal`` the rest of the bridge writes through, plus audited
                    search / view / export for the console and the CLI
    export.py       a record as JSON, plain text or printable HTML (pure)
    training_case.py  a closed chat as a training case: roles for names, personal details replaced (pure)
    retention.py    purge after retention, legal hold, erasure
    keeper.py       the bridge's background work for them: redactions owed, the purge schedule
    refusals.py     repeated refusals from one source: one audit entry at once, then one per window, counted
    cli.py          ``transcript …``, ``audit verify``, ``records …`` commands
"""
from .writer import Records

__all__ = ["Records"]
