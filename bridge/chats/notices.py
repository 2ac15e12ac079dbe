"""Every system message a citizen can see, by code, with its English text.

The store keeps the code and its parameters with each system message so the citizen's page can
show it in the citizen's language (its translation files use the same codes); the English text
is what transcripts and clients without a translation show.
"""
from __future__ import annotations

from typing import Any

ENGLISH: dict[str, str] = {
    "queued": "You are in the queue. An officer will be with you shortly.",
    "officer_joined": "{name} has joined the chat.",
    "ended_by_visitor": "The chat has ended.",
    "ended_by_officer": "{name} has ended the chat.",
    "transferred": "You are being transferred to {agency}. Your conversation so far goes with you.",
    "requeued": "You are back in the queue. Another officer will be with you shortly.",
    "emergency": "If you or someone else is in danger right now, call {number} immediately.",
    "idle_warning": "Are you still there? This chat will close soon if there is no reply.",
    "ended_idle": "The chat has ended because there was no reply.",
    "ended_abandoned": "The chat has ended because this page was closed while you waited. "
                       "You can start a new chat at any time.",
    "restored": "The chat service was restored from a backup. Your last messages, and the officer's, may be "
                "missing above: please repeat anything important.",
}


def text(code: str, **params: Any) -> str:
    """The English text of a notice; unknown codes are a programming error."""
    return ENGLISH[code].format(**params)


def message(code: str, **params: Any) -> dict[str, Any]:
    """What ``Messages.add`` needs for a system message: ``add(chat_id, SYSTEM, "text", **message(code, …))``.

    The English body for transcripts, plus the code and parameters the citizen's page translates.
    """
    return {"body": text(code, **params), "code": code, "params": params}
