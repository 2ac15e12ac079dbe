"""Practice chats: the bridge, or a supervisor, plays the citizen (issue 15, training).

A supervisor starts one (``!practice`` in a dispatch room, or the console's practice page); it is queued,
claimed and answered like any chat, so the trainee works exactly as on a real one.

With a scenario, the scripted citizen says the first line when the chat opens and the next one after each
officer reply, until the script is done. Which line comes next is decided here from what is stored (pure);
``ChatService`` says it, as the citizen, with the line's number in its client ID, so a line is never said
twice whatever is repeated.

With ``LIVE`` (console only: the citizen's link must reach the supervisor alone), nobody scripts anything:
the supervisor opens the citizen's page with the chat's token and types as the citizen would.
"""
from __future__ import annotations

from ..config import RESERVED_SCENARIO, Scenario

CITIZEN_NAME = "Practice citizen"
CLIENT_PREFIX = "practice-"
LIVE = Scenario(RESERVED_SCENARIO, "played by a supervisor", ())


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
