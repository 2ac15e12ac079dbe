"""The conversation as people saw it: one line per message, edits and removals applied (pure).

Shared by the citizen's transcript (web/transcript.py) and the "so far" notice officers get after a
transfer (officers/admission.py)."""
from __future__ import annotations

import time

from ..store.messages import Message
from ..text_lines import entry

def when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts / 1000))


def shown_lines(messages: list[Message], visitor_label: str = "You") -> list[tuple[str, str, str]]:
    """(time, who, text) as the citizen saw the conversation, edits and removals applied."""
    shown: dict[int, list[str]] = {}
    order: list[int] = []
    for m in messages:
        if m.kind in ("edit", "redaction") and m.target_seq in shown:
            shown[m.target_seq][2] = "(message removed)" if m.kind == "redaction" else m.body + " (edited)"
            continue
        who = {"visitor": visitor_label, "system": "—"}.get(m.sender_kind, m.sender or "Officer")
        text = f"* {m.sender or 'Officer'} {m.body}" if m.kind == "emote" else m.body
        shown[m.seq] = [when(m.ts), who, text]
        order.append(m.seq)
    return [tuple(shown[s]) for s in order]  # type: ignore[misc]


def conversation_lines(messages: list[Message], visitor_label: str) -> list[str]:
    """One "[time] who: text" entry per message (later lines marked, see text_lines), the citizen named
    ``visitor_label`` (e.g. for officers)."""
    return [entry(f"[{t}] {who}: ", text) for t, who, text in shown_lines(messages, visitor_label)]
