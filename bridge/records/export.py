"""A chat's record as a file: JSON (the chain, for verification), plain text, or printable HTML (pure).

JSON is the evidence: every entry with its hash and the seal. Text and HTML are for reading: one
line per entry, in words, with who, when and the device an officer wrote from; they name the seal
and the final hash so a reader can match them to the JSON copy. HTML has no scripts and prints cleanly.
"""
from __future__ import annotations

import html
import json
import time
from typing import Any

from ..text_lines import entry

FORMATS = ("json", "html", "txt")
ERASED = "[erased]"


def when(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts / 1000)) if isinstance(ts, int) else "—"


def who(e: dict[str, Any]) -> str:
    actor = e.get("actor")
    if actor is None:
        return "System"
    if actor == "visitor":
        return "Citizen"
    name = (e.get("details") or {}).get("sender_name")
    device = (e.get("details") or {}).get("device")
    label = f"{name} ({actor})" if name and name != actor else str(actor)
    return f"{label}, device {device}" if device else label


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "size unknown"
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1048576:.1f} MB"


def _personal(e: dict[str, Any], key: str) -> str | None:
    """A personal field of an entry; ERASED once the content is gone (its hash remains)."""
    content = e.get("content")
    if content is None:
        return ERASED if e.get("content_hash") else None
    value = content.get(key)
    return None if value is None else str(value)


def describe(e: dict[str, Any]) -> str:
    """One entry in plain words (what a non-technical reader needs)."""
    d = e.get("details") or {}
    kind = e.get("kind")
    body = _personal(e, "body") or ""
    if kind == "queued":
        name = _personal(e, "display_name")
        return (f"Chat {d.get('number', '')} opened by the citizen" + (f" as “{name}”" if name else "")
                + f"; topic {d.get('topic')}, agency {d.get('agency')}.")
    if kind == "message.visitor":
        return body
    if kind == "message.officer":
        fmt = d.get("format")
        if fmt == "redaction":
            return f"Removed message #{d.get('target_seq')}."
        if fmt == "edit":
            return f"Edited message #{d.get('target_seq')} to: {body}"
        return f"* {body}" if fmt == "emote" else body
    if kind == "message.refused":
        return (f"Sent a {d.get('format', 'message')} the citizen was NOT shown (not admitted to this chat): "
                f"{body}")
    if kind == "attachment":
        digest = d.get("sha256") or "not available"
        return (f"Sent a file: {_personal(e, 'name')} ({d.get('mimetype')}, {_size(d.get('size'))}); "
                f"SHA-256 {digest}.")
    if kind == "note":
        return f"Internal note (never shown to the citizen): {_personal(e, 'text') or body}"
    if kind == "officer.joined":
        return "Joined the chat."
    if kind == "closed":
        reason = _personal(e, "reason")
        by = d.get("by", "officer")
        said = "Chat closed automatically." if by == "timeout" else \
            f"Chat closed by the {'citizen' if by == 'visitor' else by}."
        return said + (f" Reason: {reason}" if reason else "")
    if kind in ("claimed", "assigned"):
        return "Claimed the chat." if kind == "claimed" else "Assigned the chat" + (
            " automatically." if d.get("how") == "auto" else ".")
    if kind == "transferred":
        note = _personal(e, "note")
        return (f"Transferred the chat to {d.get('to')} (from agency {d.get('from_agency')} to {d.get('to_agency')})."
                + (f" Note: {note}" if note else ""))
    if kind == "tag":
        return f"Tagged “{d.get('tag')}”."
    if kind == "priority":
        return f"Set the priority to {d.get('priority')}."
    if kind == "legal_hold.set":
        reason = _personal(e, "reason")
        return "Placed the chat under legal hold." + (f" Reason: {reason}" if reason else "")
    if kind == "legal_hold.lifted":
        return "Lifted the legal hold."
    if kind == "erased":
        return "The citizen's personal data in this record was erased; every entry's hash remains."
    extra = ", ".join(f"{k}: {v}" for k, v in sorted(d.items()) if k not in ("device", "sender_name"))
    content = e.get("content")
    personal = ERASED if content is None and e.get("content_hash") else \
        ", ".join(f"{k}: {v}" for k, v in sorted((content or {}).items()))
    parts = [p for p in (extra, personal) if p]
    return str(kind).replace(".", " ").capitalize() + (f" ({'; '.join(parts)})" if parts else "") + "."


def _summary(doc: dict[str, Any]) -> list[tuple[str, str]]:
    chat, seal = doc.get("chat") or {}, doc.get("seal")
    hold = chat.get("legal_hold")
    rows = [("Chat", f"{chat.get('number')} ({chat.get('id')})"),
            ("Agency", str(chat.get("agency_name") or chat.get("agency"))),
            ("Topic", str(chat.get("topic_label") or chat.get("topic"))), ("Started", when(chat.get("created_ts"))),
            ("Closed", when(chat.get("closed_ts")) if chat.get("closed_ts") else "still open"),
            ("Entries", str(len(doc.get("entries") or [])))]
    if hold:
        rows.append(("Legal hold", f"since {when(hold.get('ts'))} by {hold.get('by')}: {hold.get('reason') or ''}"))
    if seal:
        rows += [("Signed", f"{when(seal.get('signed_ts'))}, up to entry {seal.get('last_index')}"),
                 ("Final hash", str(seal.get("final_hash"))), ("Signing key (Ed25519)", str(seal.get("public_key")))]
    else:
        rows.append(("Signed", "not yet (the record is signed when the chat closes)"))
    rows.append(("Exported", when(doc.get("exported_ts"))))
    return rows


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def as_text(doc: dict[str, Any], service_name: str) -> str:
    lines = [f"{service_name} — record of chat {(doc.get('chat') or {}).get('number')}", ""]
    lines += [f"{k}: {v}" for k, v in _summary(doc)] + [""]
    for e in doc.get("entries") or []:
        lines.append(entry(f"#{e.get('index')} [{when(e.get('ts'))}] {who(e)}: ", describe(e)))
    lines += ["", "Check this record against its JSON copy with: python -m bridge transcript verify <file.json>"]
    return "\n".join(lines) + "\n"


_CSS = ("body{font:11pt/1.45 Georgia,serif;margin:2em;color:#000}h1{font-size:16pt}"
        "table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:.3em .5em;"
        "vertical-align:top;text-align:left}thead th{background:#eee}.hash{font-family:monospace;"
        "word-break:break-all;font-size:9pt}.erased{font-style:italic;color:#555}"
        "@media print{body{margin:0}tr{page-break-inside:avoid}thead{display:table-header-group}}")


def as_html(doc: dict[str, Any], service_name: str) -> str:
    e = html.escape
    title = f"{service_name} — record of chat {(doc.get('chat') or {}).get('number')}"
    summary = "".join(f"<tr><th scope=\"row\">{e(k)}</th><td class=\"{'hash' if 'hash' in k or 'key' in k else ''}\">"
                      f"{e(v)}</td></tr>" for k, v in _summary(doc))
    rows = []
    for entry in doc.get("entries") or []:
        text = describe(entry)
        cls = " class=\"erased\"" if ERASED in text else ""
        rows.append(f"<tr><td>{e(str(entry.get('index')))}</td><td>{e(when(entry.get('ts')))}</td>"
                    f"<td>{e(who(entry))}</td><td{cls}>{e(text)}</td></tr>")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"
            f"<table><tbody>{summary}</tbody></table>"
            f"<p>Every entry is linked to the one before it by a cryptographic hash, and the bridge signed the "
            f"final hash when the chat closed. To check this record has not been changed, verify its JSON "
            f"copy: <code>python -m bridge transcript verify &lt;file.json&gt;</code>.</p>"
            f"<table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Time</th><th scope=\"col\">Who</th>"
            f"<th scope=\"col\">What</th></tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>\n")


def render(doc: dict[str, Any], fmt: str, service_name: str) -> str:
    if fmt == "json":
        return as_json(doc)
    if fmt == "html":
        return as_html(doc, service_name)
    if fmt == "txt":
        return as_text(doc, service_name)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
