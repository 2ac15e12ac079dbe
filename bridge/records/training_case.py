"""A finished chat as a training case: the conversation, with who took part and what could identify
someone replaced (pure; issue 15). For trainers, never evidence: the record itself is the JSON export.

Replaced: the citizen's name (→ "Citizen"), each officer's name and Matrix ID (→ "Officer A", "Officer B" …,
in order of first appearance), and in every message's text e-mail addresses, web addresses, phone numbers,
UK postcodes, vehicle registrations, street addresses ("12 High Street"), dates and any other run of five
or more digits (crime, frame or card numbers). Not detected: other people's names written in free text,
and anything a pattern cannot see (a described face, a place named without a number); the case says so.
"""
from __future__ import annotations

import re
from typing import Any

from .export import ERASED

NOTICE = ("Training case made from a closed chat. Names, contact details, addresses, registrations, dates and "
          "long numbers have been replaced; other names written in free text may remain: read it before use.")

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"(?i)\b(?:https?://|www\.)\S+"), "[web address]"),
    (re.compile(r"(?i)\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b"), "[postcode]"),
    (re.compile(r"(?i)\b[A-Z]{2}\d{2}\s?[A-Z]{3}\b"), "[registration]"),
    (re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b"), "[date]"),
    (re.compile(r"(?<![\w])\+?\d[\d\s().-]{6,}\d"), "[number]"),                   # phones, card numbers
    (re.compile(r"(?i)\b\d{1,4}[a-z]?\s+(?:[A-Z][\w'-]*\s+){1,3}(?:street|st|road|rd|avenue|ave|lane|ln|close|"
                r"drive|dr|way|court|ct|place|pl|crescent|terrace|gardens|grove|hill|park|square|row|mews)\b"),
     "[address]"),
    (re.compile(r"\d{5,}"), "[number]"),
]


def anonymise(text: str, names: dict[str, str]) -> str:
    """``text`` with each known name (→ its placeholder) and each pattern above replaced."""
    for name in sorted(names, key=len, reverse=True):          # "Sam Jones" before "Sam"
        if name.strip():
            text = re.sub(rf"(?i)(?<!\w){re.escape(name)}(?!\w)", names[name], text)
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def _content(e: dict[str, Any], key: str) -> str | None:
    value = (e.get("content") or {}).get(key)
    return value if isinstance(value, str) and value else None


TITLES = frozenset({"pc", "dc", "ps", "sgt", "insp", "mr", "mrs", "ms", "miss", "dr", "officer", "constable",
                    "sergeant", "inspector", "the", "and"})


def _name_and_parts(name: str) -> list[str]:
    """A full name and each of its words people also write alone ("Sam" of "Sam Jones"), titles aside."""
    words = [w for w in re.split(r"[\s,]+", name) if len(w) >= 3 and w.lower() not in TITLES]
    return [name, *words]


def _names(entries: list[dict[str, Any]]) -> dict[str, str]:
    """Every name and ID that identifies a participant → its placeholder."""
    names: dict[str, str] = {}
    officers: dict[str, str] = {}
    for e in entries:
        display = _content(e, "display_name")
        if e.get("kind") == "queued" and display:
            names.update(dict.fromkeys(_name_and_parts(display), "Citizen"))
        actor = e.get("actor")
        if isinstance(actor, str) and actor.startswith("@"):
            label = officers.setdefault(actor, f"Officer {chr(ord('A') + len(officers) % 26)}")
            names[actor] = label
            names[actor[1:].split(":", 1)[0]] = label                       # the localpart, as people write it
            sender = (e.get("details") or {}).get("sender_name")
            if isinstance(sender, str) and sender:
                names.update(dict.fromkeys(_name_and_parts(sender), label))
    return names


def render(doc: dict[str, Any]) -> str:
    """The case as plain text: a header without identifiers, then one line per turn."""
    entries = doc.get("entries") or []
    names = _names(entries)
    chat = doc.get("chat") or {}
    lines = [NOTICE, "", f"Topic: {chat.get('topic_label') or chat.get('topic') or '—'}", ""]
    for e in entries:
        kind, actor = e.get("kind"), e.get("actor")
        who = names.get(actor, "Officer") if isinstance(actor, str) and actor.startswith("@") else "Citizen"
        body = _content(e, "body")
        if kind == "message.visitor":
            lines.append(f"Citizen: {anonymise(body or ERASED, names)}")
        elif kind == "message.officer":
            fmt = (e.get("details") or {}).get("format")
            if fmt == "redaction":
                continue
            lines.append(f"{who}: {anonymise(body or ERASED, names)}" + (" (edited)" if fmt == "edit" else ""))
        elif kind == "attachment":
            lines.append(f"{who}: [sent a file: {(e.get('details') or {}).get('mimetype') or 'unknown type'}]")
        elif kind == "officer.joined":
            lines.append(f"({who} joined)")
        elif kind == "transferred":
            lines.append("(transferred to another agency)")
        elif kind == "closed":
            by = (e.get("details") or {}).get("by", "officer")
            lines.append("(the chat ended: " + {"visitor": "the citizen closed it", "timeout": "idle time-out"}.get(
                by, "an officer closed it") + ")")
    return "\n".join(lines) + "\n"
