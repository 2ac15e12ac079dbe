"""The citizen's own copy of the conversation, as plain text or a printable HTML page (pure)."""
from __future__ import annotations

import html
import time

from ..store.chats import Chat
from ..text_lines import entry
from ..store.messages import Message

DEFAULT_SERVICE_NAME = "Police non-emergency web chat"   # when site.service_name is left empty


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts / 1000))


def _lines(messages: list[Message], visitor_label: str = "You") -> list[tuple[str, str, str]]:
    """(time, who, text) as the citizen saw the conversation, edits and removals applied."""
    shown: dict[int, list[str]] = {}
    order: list[int] = []
    for m in messages:
        if m.kind in ("edit", "redaction") and m.target_seq in shown:
            shown[m.target_seq][2] = "(message removed)" if m.kind == "redaction" else m.body + " (edited)"
            continue
        who = {"visitor": visitor_label, "system": "—"}.get(m.sender_kind, m.sender or "Officer")
        text = f"* {m.sender or 'Officer'} {m.body}" if m.kind == "emote" else m.body
        shown[m.seq] = [_when(m.ts), who, text]
        order.append(m.seq)
    return [tuple(shown[s]) for s in order]  # type: ignore[misc]


def conversation_lines(messages: list[Message], visitor_label: str) -> list[str]:
    """One "[time] who: text" entry per message (later lines marked, see text_lines), the citizen named
    ``visitor_label`` (e.g. for officers)."""
    return [entry(f"[{t}] {who}: ", text) for t, who, text in _lines(messages, visitor_label)]


def as_text(chat: Chat, service_name: str, messages: list[Message]) -> str:
    head = [f"{service_name} — transcript of chat {chat.number}", f"Started {_when(chat.created_ts)}", ""]
    return "\n".join(head + [entry(f"[{t}] {who}: ", text) for t, who, text in _lines(messages)]) + "\n"


def as_html(chat: Chat, service_name: str, messages: list[Message]) -> str:
    e = html.escape
    rows = "\n".join(f"<tr><td>{e(t)}</td><th scope=\"row\">{e(who)}</th><td>{e(text)}</td></tr>"
                     for t, who, text in _lines(messages))
    title = f"{service_name} — chat {chat.number}"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title></head>"
            f"<body><h1>{e(title)}</h1><p>Started {e(_when(chat.created_ts))}</p>"
            f"<table><thead><tr><th scope=\"col\">Time</th><th scope=\"col\">From</th>"
            f"<th scope=\"col\">Message</th></tr></thead><tbody>{rows}</tbody></table></body></html>\n")
