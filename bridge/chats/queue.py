"""Where a waiting citizen stands, and an honest estimate of the wait (pure functions).

The estimate is the median of real waits (chat opened → first officer joined) of recent chats on
the same topic.  With too few of them there is no estimate: the page says "we don't know yet"
rather than a made-up number.
"""
from __future__ import annotations

from statistics import median

MIN_SAMPLES = 5          # fewer recent answered chats than this: no estimate


def estimate_seconds(recent_waits_ms: list[int]) -> int | None:
    if len(recent_waits_ms) < MIN_SAMPLES:
        return None
    return max(1, round(median(recent_waits_ms) / 1000))


def abandoned(now_ms: int, limit_seconds: float, open_connections: int, *activity_ms: int | None) -> bool:
    """Whether a waiting chat is left behind: no page open now, and nothing from the citizen (opening it,
    a message, a connection) for ``limit_seconds`` (0: never)."""
    if not limit_seconds or open_connections:
        return False
    return now_ms - max(t for t in activity_ms if t is not None) >= limit_seconds * 1000
