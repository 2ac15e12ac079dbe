"""``python -m bridge transcript … | audit … | records …``: the records commands (each audited).

They open the same store as the running bridge (SQLite WAL; writes wait for the bridge's lock),
so they can be used while it runs. ``transcript verify`` needs no store or config: it works offline
on an exported file.
"""
from __future__ import annotations

import argparse
import calendar
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .. import config as cfg
from .export import FORMATS
from .transcripts import verify_document


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..store import Store
    from .writer import Records

    config = cfg.load_file(args.config)
    store = Store.open(config.path("store.path"), config.get("chats.first_number"))
    return config, store, Records.open(config, store)


def _chat_or_exit(records: Any, ref: str) -> Any:
    chat = records.find_chat(ref)
    if chat is None:
        raise SystemExit(f"No chat {ref!r} (give a chat ID or number).")
    return chat


def _day(text: str) -> int:
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%d")) * 1000
    except ValueError:
        raise SystemExit(f"{text!r} is not a date like 2026-11-29")


def cmd_export(args: argparse.Namespace) -> int:
    config, store, records = _open(args)
    try:
        chat = _chat_or_exit(records, args.chat)
        text = records.export(chat.id, args.format, actor=_actor(), origin="cli",
                              service_name=config.get("site.service_name"))
    finally:
        store.close()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"Wrote the record of chat {chat.number} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        doc = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        print(f"FAILED: cannot read {args.file} as JSON: {e}")
        return 1
    problem = verify_document(doc, args.public_key)
    if problem:
        print(f"FAILED: {problem}")
        return 1
    seal = doc.get("seal")
    entries = len(doc.get("entries") or [])
    if seal:
        key = "the given key" if args.public_key else f"the key in the file ({seal['public_key']}); compare it " \
                                                        "with `python -m bridge records public-key`"
        print(f"OK: {entries} entries intact; signed by {key}")
    else:
        print(f"OK: {entries} entries intact; not signed (the chat was still open when exported)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    config, store, records = _open(args)
    try:
        hits = records.search(args.phrase, actor=_actor(), origin="cli", agency=args.agency, topic=args.topic,
                              officer=args.officer, since_ms=_day(args.since) if args.since else None,
                              until_ms=_day(args.until) + 86_400_000 if args.until else None, tag=args.tag,
                              rating=args.rating, limit=args.limit)
    finally:
        store.close()
    for h in hits:
        print(f"chat {h.number} ({h.chat_id}) #{h.idx} {time.strftime('%Y-%m-%d %H:%M', time.gmtime(h.ts / 1000))}"
              f" {h.agency}/{h.topic}: {h.snippet}")
    print(f"{len(hits)} match(es)", file=sys.stderr)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    config, store, records = _open(args)
    try:
        problem = records.trail.verify()
        count = len(records.trail.entries())
        signed = len(store.audit_log.checkpoints())
        records.audit("audit.verified", _actor(), "ok" if problem is None else "failed", origin="cli",
                      problem=str(problem) if problem else None)
    finally:
        store.close()
    if problem:
        print(f"FAILED: {problem}")
        return 1
    print(f"OK: {count} audit entries intact; {signed} signed checkpoint(s) hold")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    from .signing import Signer

    config = cfg.load_file(args.config)
    print("ed25519:" + Signer.load_or_create(config.path("records.signing_key_path")).public_key)
    return 0


def _retention(config: Any, store: Any, records: Any) -> Any:
    from .retention import Retention

    return Retention(config, store, records)


def cmd_purge(args: argparse.Namespace) -> int:
    config, store, records = _open(args)
    try:
        purged = _retention(config, store, records).purge_expired(actor=args.by or _actor(), origin="cli")
        pruned = records.trail.prune(config.get("records.audit_retention_days"))
    finally:
        store.close()
    print(f"Purged {len(purged)} chat(s) past retention (held chats kept); {pruned} old audit entries pruned.")
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    config, store, records = _open(args)
    try:
        chat = _chat_or_exit(records, args.chat)
        retention = _retention(config, store, records)
        if args.lift:
            changed = retention.lift(chat, args.by or _actor(), "cli")
            print(f"Legal hold on chat {chat.number} lifted." if changed else f"Chat {chat.number} was not held.")
        else:
            changed = retention.hold(chat, args.reason, args.by or _actor(), "cli")
            print(f"Chat {chat.number} is under legal hold." if changed else f"Chat {chat.number} was already held.")
    finally:
        store.close()
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from .retention import Refused

    config, store, records = _open(args)
    try:
        chat = _chat_or_exit(records, args.chat)
        try:
            erased = _retention(config, store, records).erase(chat, args.by or _actor(), "cli")
        except Refused as e:
            print(f"Refused ({e.error}): {e.message}", file=sys.stderr)
            return 1
    finally:
        store.close()
    if erased.already:
        print(f"Chat {chat.number} was already erased.")
    else:
        print(f"Chat {chat.number} erased from the bridge's store; {erased.redactions} message(s) of the citizen "
              "will be redacted in the Matrix room by the running bridge.")
    return 0


def add_parsers(sub: Any) -> None:
    def with_config(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
        p.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
        p.set_defaults(func=func)

    t = sub.add_parser("transcript", help="export, verify or search chat records").add_subparsers(
        dest="transcript_command", required=True)
    p = t.add_parser("export", help="write a chat's record (JSON carries the chain and signature)")
    p.add_argument("chat", help="chat ID or number")
    p.add_argument("--format", choices=FORMATS, default="json")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    with_config(p, cmd_export)
    p = t.add_parser("verify", help="check an exported JSON record offline; names the first bad entry")
    p.add_argument("file")
    p.add_argument("--public-key", help="the bridge's key (from `records public-key`); default: the file's own")
    p.set_defaults(func=cmd_verify)
    p = t.add_parser("search", help="full-text search over transcripts")
    p.add_argument("phrase")
    for name in ("agency", "topic", "officer", "tag"):
        p.add_argument(f"--{name}")
    p.add_argument("--since", help="chats started on or after this day (YYYY-MM-DD)")
    p.add_argument("--until", help="chats started on or before this day (YYYY-MM-DD)")
    p.add_argument("--rating", type=int, choices=range(1, 6))
    p.add_argument("--limit", type=int, default=100)
    with_config(p, cmd_search)

    a = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    with_config(a.add_parser("verify", help="check the audit log's hash chain"), cmd_audit_verify)

    r = sub.add_parser("records", help="signing key, retention, legal hold, erasure").add_subparsers(
        dest="records_command", required=True)
    with_config(r.add_parser("public-key", help="print the key that signs transcripts"), cmd_public_key)
    p = r.add_parser("purge", help="purge closed chats past retention now (the bridge also does it on a schedule)")
    p.add_argument("--by", help="who asks (recorded in the audit log; default: the system user)")
    with_config(p, cmd_purge)
    p = r.add_parser("hold", help="place (or --lift) a legal hold on a chat")
    p.add_argument("chat", help="chat ID or number")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--reason", help="why the chat must be kept (e.g. a case reference)")
    g.add_argument("--lift", action="store_true", help="lift the hold")
    p.add_argument("--by", help="who asks (recorded in the audit log; default: the system user)")
    with_config(p, cmd_hold)
    p = r.add_parser("erase", help="erase a closed chat's personal data (refused under legal hold)")
    p.add_argument("chat", help="chat ID or number")
    p.add_argument("--by", help="who asks (recorded in the audit log; default: the system user)")
    with_config(p, cmd_erase)
