"""The citizen's own copy of the conversation, as plain text or a printable HTML page (pure)."""
from __future__ import annotations

import html
import time

from ..chats.conversation import shown_lines, when
from ..store.chats import Chat
from ..store.messages import Message
from ..text_lines import entry

DEFAULT_SERVICE_NAME = "Police non-emergency web chat"   # when site.service_name is left empty


def as_text(chat: Chat, service_name: str, messages: list[Message]) -> str:
    head = [f"{service_name} — transcript of chat {chat.number}", f"Started {when(chat.created_ts)}", ""]
    return "\n".join(head + [entry(f"[{t}] {who}: ", text) for t, who, text in shown_lines(messages)]) + "\n"


def as_html(chat: Chat, service_name: str, messages: list[Message]) -> str:
    e = html.escape
    rows = "\n".join(f"<tr><td>{e(t)}</td><th scope=\"row\">{e(who)}</th><td>{e(text)}</td></tr>"
                     for t, who, text in shown_lines(messages))
    title = f"{service_name} — chat {chat.number}"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title></head>"
            f"<body><h1>{e(title)}</h1><p>Started {e(when(chat.created_ts))}</p>"
            f"<table><thead><tr><th scope=\"col\">Time</th><th scope=\"col\">From</th>"
            f"<th scope=\"col\">Message</th></tr></thead><tbody>{rows}</tbody></table></body></html>\n")
