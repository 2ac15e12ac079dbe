"""Practice chats: the bridge plays the citizen from a scenario's script (issue 15, training).

A supervisor starts one (``!practice``); it is queued, claimed and answered like any chat, so the trainee
works exactly as on a real one. The scripted citizen says the first line when the chat opens and the
next one after each officer reply, until the script is done. Which line comes next is decided here from
what is stored (pure); ``ChatService`` says it, as the citizen, with the line's number in its client ID,
so a line is never said twice whatever is repeated.
"""
from __future__ import annotations

from ..config import Scenario

CITIZEN_NAME = "Practice citizen"
CLIENT_PREFIX = "practice-"


def client_id(index: int) -> str:
    return f"{CLIENT_PREFIX}{index}"


def next_line(scenario: Scenario, citizen_lines: int, officer_replies: int) -> tuple[int, str] | None:
    """The (index, text) the scripted citizen says now, or None.

    ``citizen_lines``: lines said so far; ``officer_replies``: officer messages so far. The citizen answers
    each reply with one line: line k (k ≥ 1) is due once there are k replies."""
    if citizen_lines >= len(scenario.lines):
        return None
    if citizen_lines == 0 or officer_replies >= citizen_lines:
        return citizen_lines, scenario.lines[citizen_lines]
    return None


def room_name(number: int, label: str, training: str | None) -> str:
    """A chat room's name; practice chats say so first, so nobody takes one for a real citizen."""
    name = f"Chat {number} — {label}"
    return f"TRAINING — {name}" if training else name
