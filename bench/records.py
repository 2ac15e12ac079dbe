"""Records benchmark: how long appending a chained entry and verifying a chain take, on a real store.

    .venv/bin/python bench/records.py [--chats 20] [--entries 200]

Uses a temporary SQLite store (WAL, synchronous=FULL, as the command-line tools run it; the bridge
itself syncs in a worker thread, see store/db.py) and the real ``bridge.records`` code. Prints
medians and p90s; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.records import Records  # noqa: E402
from bridge.records.signing import Signer  # noqa: E402
from bridge.records.transcripts import verify_document  # noqa: E402
from bridge.store import Store  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chats", type=int, default=20)
    ap.add_argument("--entries", type=int, default=200, help="entries per chat")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.db")
        records = Records(store, Signer.load_or_create(Path(tmp) / "key"))
        append_ms, close_ms, verify_ms, audit_ms = [], [], [], []
        for c in range(args.chats):
            chat = store.chats.create(f"chat-{c}", f"hash-{c}", "general", "central", "Bench Citizen", "en")
            for i in range(args.entries - 1):
                t = time.perf_counter()
                records.chat_event(chat.id, "message.visitor", "visitor", seq=i + 1,
                                   body=f"message {i} of a benchmark chat, long enough to look like a sentence")
                append_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            records.chat_event(chat.id, "closed", "visitor", by="visitor")      # append + Ed25519 seal
            close_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            problem = verify_document(records.transcripts.document(chat.id), records.signer.public_key)
            verify_ms.append((time.perf_counter() - t) * 1000)
            assert problem is None, problem
            t = time.perf_counter()
            records.audit("transcript.viewed", "@sup:bench", target=chat.id, origin="bench")
            audit_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        assert records.trail.verify() is None
        trail_ms = (time.perf_counter() - t) * 1000
        store.close()
    print(f"records bench: {args.chats} chats x {args.entries} entries, SQLite WAL synchronous=FULL")
    print(f"  append one entry (own commit)     median {statistics.median(append_ms):.2f} ms   p90 {pct(append_ms, .9):.2f} ms")
    print(f"  close: append + sign              median {statistics.median(close_ms):.2f} ms   p90 {pct(close_ms, .9):.2f} ms")
    print(f"  verify a {args.entries}-entry chat + seal  median {statistics.median(verify_ms):.2f} ms   "
          f"p90 {pct(verify_ms, .9):.2f} ms  ({statistics.median(verify_ms) / args.entries * 1000:.0f} µs/entry)")
    print(f"  audit entry                       median {statistics.median(audit_ms):.2f} ms")
    print(f"  verify audit trail ({args.chats} entries)    {trail_ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
