"""The figures of a set of chats (pure functions; times in milliseconds since the epoch, UTC).

Definitions, so a figure can be checked by hand:

* waiting time: chat opened → first officer joined (answered); answered chats only.
* first-response time: chat opened → the first message an officer wrote; chats with one only.
* handling time: answered → closed; chats both answered and closed.
* abandoned before answer: closed without ever being answered; the rate is over closed chats.
* p50 / p90: nearest-rank percentiles (the value at rank ⌈p/100 · n⌉ of the sorted values), so every
  figure is one of the real times, never an interpolation.
* transfers: how many transfers happened; emergencies: chats flagged as an emergency at least once.
* feedback average: mean citizen rating (1–5) of the rated chats.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Callable, Iterable


@dataclass(frozen=True)
class ChatFacts:
    chat_id: str
    agency: str
    topic: str
    officer: str | None
    created_ts: int
    answered_ts: int | None = None
    first_response_ts: int | None = None
    closed_ts: int | None = None
    transfers: int = 0
    emergency: bool = False
    rating: int | None = None


@dataclass(frozen=True)
class Figures:
    chats: int
    answered: int
    closed: int
    abandoned: int
    abandoned_rate: float | None
    wait_p50_s: float | None
    wait_p90_s: float | None
    first_response_p50_s: float | None
    first_response_p90_s: float | None
    handling_p50_s: float | None
    handling_p90_s: float | None
    transfers: int
    emergencies: int
    rated: int
    feedback_average: float | None

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def percentile(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _seconds(pairs: Iterable[tuple[int | None, int | None]]) -> list[float]:
    return [(end - start) / 1000 for start, end in pairs if start is not None and end is not None]


def figures(chats: list[ChatFacts]) -> Figures:
    waits = _seconds((c.created_ts, c.answered_ts) for c in chats)
    responses = _seconds((c.created_ts, c.first_response_ts) for c in chats)
    handling = _seconds((c.answered_ts, c.closed_ts) for c in chats)
    closed = [c for c in chats if c.closed_ts is not None]
    abandoned = [c for c in closed if c.answered_ts is None]
    ratings = [c.rating for c in chats if c.rating is not None]
    return Figures(
        chats=len(chats), answered=len(waits), closed=len(closed), abandoned=len(abandoned),
        abandoned_rate=len(abandoned) / len(closed) if closed else None,
        wait_p50_s=percentile(waits, 50), wait_p90_s=percentile(waits, 90),
        first_response_p50_s=percentile(responses, 50), first_response_p90_s=percentile(responses, 90),
        handling_p50_s=percentile(handling, 50), handling_p90_s=percentile(handling, 90),
        transfers=sum(c.transfers for c in chats), emergencies=sum(1 for c in chats if c.emergency),
        rated=len(ratings), feedback_average=sum(ratings) / len(ratings) if ratings else None)


def grouped(chats: list[ChatFacts], key: Callable[[ChatFacts], str]) -> dict[str, Figures]:
    groups: dict[str, list[ChatFacts]] = {}
    for c in chats:
        groups.setdefault(key(c), []).append(c)
    return {name: figures(members) for name, members in sorted(groups.items())}


UNANSWERED = "(not answered)"


def by_officer(c: ChatFacts) -> str:
    return c.officer or UNANSWERED


def per_hour(chats: list[ChatFacts]) -> list[int]:
    """Chats opened in each hour of the day (UTC), 0–23."""
    counts = [0] * 24
    for c in chats:
        counts[time.gmtime(c.created_ts / 1000).tm_hour] += 1
    return counts


def per_day(chats: list[ChatFacts], since_ms: int, until_ms: int) -> list[tuple[str, int]]:
    """Chats opened on each day (UTC) from ``since_ms`` up to ``until_ms``, days without chats included."""
    days: dict[str, int] = {}
    day = since_ms - since_ms % 86_400_000
    while day < until_ms:
        days[time.strftime("%Y-%m-%d", time.gmtime(day / 1000))] = 0
        day += 86_400_000
    for c in chats:
        label = time.strftime("%Y-%m-%d", time.gmtime(c.created_ts / 1000))
        if label in days:
            days[label] += 1
    return list(days.items())
