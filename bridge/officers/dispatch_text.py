"""What the dispatch room shows about a chat or a ticket (pure: text in, text out)."""
from __future__ import annotations

import html
import time

from ..store.chats import ACTIVE, CLOSED, Chat
from ..store.tickets import Ticket
from ..text_lines import entry, quoted


def duration(ms: int) -> str:
    seconds = max(0, ms // 1000)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m"


def _clock(ms: int) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(ms / 1000))


def chat_status(chat: Chat, now_ms: int, prefix: str) -> str:
    if chat.state == CLOSED:
        return f"Closed after {duration((chat.closed_ts or now_ms) - chat.created_ts)}."
    if chat.claimed_by and chat.state == ACTIVE:
        return f"Taken by {chat.claimed_by}."
    if chat.claimed_by:
        return f"Claimed by {chat.claimed_by}, who is being invited."
    return (f"Waiting since {_clock(chat.created_ts)} ({duration(now_ms - chat.created_ts)} so far). "
            f"Claim with {prefix}claim {chat.number} or react to this notice.")


def chat_notice(chat: Chat, topic_label: str, now_ms: int, prefix: str) -> str:
    head = f"Chat {chat.number} · {topic_label} · language {chat.language or 'not given'}"
    if chat.emergency:
        head = "🚨 EMERGENCY · " + head
    elif chat.priority:
        head = "⚑ High priority · " + head
    if chat.training:
        head = f"🎓 TRAINING ({chat.training}) · " + head     # a practice chat: the bridge plays the citizen
    lines = [head, chat_status(chat, now_ms, prefix)]
    if chat.preview:
        lines.append(f"“{chat.preview}”")
    if chat.transferred_by:
        note = f": {chat.transfer_note}" if chat.transfer_note else ""
        lines.append(f"Transferred here by {chat.transferred_by}{note}")
    if chat.label_list:
        lines.append("Tags: " + ", ".join(chat.label_list))
    return "\n".join(lines)


REALERT_LISTED = 20            # chats named in one re-alert; the rest are counted


def unclaimed_notice(queue: list[Chat], now_ms: int, prefix: str) -> str:
    """One re-alert for an agency's whole unclaimed queue (longest wait first)."""
    ordered = sorted(queue, key=lambda c: c.created_ts)
    items = [f"Chat {c.number} ({duration(now_ms - c.created_ts)}{', 🚨 emergency' if c.emergency else ''})"
             for c in ordered[:REALERT_LISTED]]
    more = len(ordered) - REALERT_LISTED
    noun = "chat is" if len(ordered) == 1 else "chats are"
    return (f"{len(ordered)} {noun} waiting without an officer: " + ", ".join(items)
            + (f" and {more} more" if more > 0 else "") + f". {prefix}claim <number> to take one.")


def transferred_notice(chat: Chat, topic_label: str, to: str, by: str) -> str:
    """The last state of a chat's notice in the dispatch room it left."""
    return f"Chat {chat.number} · {topic_label} · language {chat.language or 'not given'}\nTransferred to {to} by {by}."


def ticket_notice(ticket: Ticket, topic_label: str, prefix: str) -> str:
    lines = [f"Offline message T{ticket.number} · {topic_label} · left at {_clock(ticket.created_ts)}",
             quoted(ticket.message),
             entry("From: ", f"{ticket.name or 'no name given'}; contact: {ticket.contact or 'none given'}")]
    if ticket.claimed_by:
        lines.append(f"Taken by {ticket.claimed_by}, who follows it up.")
    else:
        lines.append(f"Take it with {prefix}claim T{ticket.number} or react to this notice.")
    return "\n".join(lines)


def as_html(text: str, mentions: list[str] = ()) -> str:  # type: ignore[assignment]
    """The text as HTML, with each mentioned user ID turned into a pill."""
    out = html.escape(text).replace("\n", "<br>")
    for user in mentions:
        out = out.replace(html.escape(user), f'<a href="https://matrix.to/#/{html.escape(user)}">{html.escape(user)}</a>')
    return out
