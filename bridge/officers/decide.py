"""Routing decisions without I/O: who gets a chat, and which timer is due for a chat.

The routing service (``routing.py``) reads the store, asks these functions, and acts.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import Timeouts
from ..store.chats import ACTIVE, CLOSED, WAITING, Chat


@dataclass(frozen=True)
class Candidate:
    user_id: str
    held: int                      # open chats the officer holds now
    available: bool
    last_assigned_ts: int = 0


def is_available(said: int | None, presence: str | None) -> bool:
    """Available after !available (until !away), unless the homeserver reports them offline or idle."""
    return said == 1 and presence not in ("offline", "unavailable")


def pick_officer(candidates: list[Candidate], cap: int, exclude: frozenset[str] = frozenset()) -> str | None:
    """The available officer under the cap with the fewest chats; ties go to whoever waited longest."""
    eligible = [c for c in candidates if c.available and c.held < cap and c.user_id not in exclude]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (c.held, c.last_assigned_ts, c.user_id)).user_id


UNANSWERED, IDLE_WARN, IDLE_CLOSE = "unanswered", "idle_warn", "idle_close"


def unclaimed_alert(queue: list[Chat], t: Timeouts, now: int) -> list[Chat]:
    """The chats one re-alert lists now, or [] (times in ms). ``queue``: the agency's unclaimed waiting chats.

    One notice per dispatch room per interval, never one per chat: it is due when some chat has waited an
    interval since it was last listed (or opened) and no notice went out within the interval; it then lists
    the whole queue, so chats that arrived meanwhile ride along instead of each costing a notice of its own.
    """
    interval = t.unclaimed_seconds * 1000
    if not interval or not queue:
        return []
    if now - max(c.alerted_ts or 0 for c in queue) < interval:
        return []
    if not any(now - (c.alerted_ts or c.created_ts) >= interval for c in queue):
        return []
    return list(queue)


def absent(presence: str | None, last_active_ago_ms: int | None, grace_seconds: float) -> bool:
    """Whether an officer holding chats counts as gone: the homeserver says offline or unavailable, and
    they were last active at least ``grace_seconds`` ago (0: never counts)."""
    return bool(grace_seconds) and presence in ("offline", "unavailable") \
        and last_active_ago_ms is not None and last_active_ago_ms >= grace_seconds * 1000


def reads_message_times(chat: Chat, t: Timeouts) -> bool:
    """Whether ``due`` looks at the chat's last message times at all (only an active chat's idle timers do):
    the timers' pass over every open chat reads them for those chats alone."""
    return chat.state == ACTIVE and bool(t.visitor_idle_seconds)


def due(chat: Chat, t: Timeouts, now: int, last_visitor_ts: int | None, last_officer_ts: int | None) -> str | None:
    """The one timer action due for this chat now, if any (times in ms); unclaimed re-alerts are per
    agency (``unclaimed_alert``)."""
    if chat.state == CLOSED:
        return None
    if chat.claimed_by and not chat.replied_ts and t.unanswered_seconds and chat.claimed_ts:
        if now - chat.claimed_ts >= t.unanswered_seconds * 1000:
            return UNANSWERED
    if chat.state == ACTIVE and t.visitor_idle_seconds and last_officer_ts \
            and (last_visitor_ts or 0) < last_officer_ts:
        warned = chat.idle_warned_ts and chat.idle_warned_ts >= last_officer_ts
        if not warned and now - last_officer_ts >= t.visitor_idle_seconds * 1000:
            return IDLE_WARN
        if warned and t.visitor_idle_close_seconds \
                and now - chat.idle_warned_ts >= t.visitor_idle_close_seconds * 1000:  # type: ignore[operator]
            return IDLE_CLOSE
    return None
