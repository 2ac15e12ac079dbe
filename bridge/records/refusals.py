"""Repeated refusals from one source: one audit entry at once, then one per window with a count.

A flood (a script starting chats, bogus console sign-ins, erasure requests for an open chat) is
refused many times a second; one audit entry each would fill a trail kept for a year.  So, per
*tally* (action, actor, outcome, target, reason, source):

    first refusal ────────► audit entry now (as any refusal was recorded before)
    repeats in the window ─► counted in memory, nothing written
    window ends ──────────► one audit entry: {"repeats": n, "first_ts", "last_ts", "window_seconds"}
                            (none when there was no repeat); the next refusal starts a new window

A chain entry cannot be changed once written, hence two entries rather than one whose count grows.
The source is the client address's salted daily hash (``store.sources.key``), never the address.
Windows that are open when the bridge stops are written at the stop, with the count so far; a
crash loses the counts of open windows (their first refusals are on record).  At most
``MAX_SOURCES`` sources are counted per action at a time; refusals from further sources share one
tally whose source is ``"other sources"``, so a flood from many addresses stays bounded too.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from ..store import Store
from .audit import AuditTrail

MAX_SOURCES = 500           # sources counted per action at once; the rest share one tally
OTHERS = "other sources"

_Key = tuple[str, str, str, str | None, str, str | None]


@dataclass
class _Tally:
    action: str
    actor: str
    outcome: str
    target: str | None
    origin: str | None
    reason: str
    source: str | None
    details: dict[str, Any]
    ends: float             # when the window closes (clock seconds)
    repeats: int = 0
    first_ms: int = 0       # of the first and the last repeat
    last_ms: int = 0


class RepeatedRefusals:
    def __init__(self, store: Store, trail: AuditTrail, window_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.trail, self.window, self.clock = store, trail, window_seconds, clock
        self._open: dict[_Key, _Tally] = {}
        self._per_action: Counter[str] = Counter()

    def refused(self, action: str, actor: str, outcome: str, *, source: str | None, target: str | None,
                origin: str | None, reason: str, details: dict[str, Any]) -> None:
        now = self.clock()
        hashed = self.store.sources.key(source) if source else None
        key: _Key = (action, actor, outcome, target, reason, hashed)
        self._close_if_over(key, now)
        if key not in self._open and self._per_action[action] >= MAX_SOURCES:
            hashed = OTHERS
            key = (action, actor, outcome, target, reason, hashed)
            self._close_if_over(key, now)
        tally = self._open.get(key)
        if tally is not None:
            ms = int(now * 1000)
            tally.repeats += 1
            tally.first_ms = tally.first_ms or ms
            tally.last_ms = ms
            return
        self._open[key] = _Tally(action, actor, outcome, target, origin, reason, hashed, dict(details),
                                 now + self.window)
        self._per_action[action] += 1
        self.trail.append(action, actor, outcome, target, origin, {**details, "reason": reason, "source": hashed})

    def _close_if_over(self, key: _Key, now: float) -> None:
        tally = self._open.get(key)
        if tally is not None and now >= tally.ends:
            self._close(key)

    def _close(self, key: _Key) -> None:
        tally = self._open.pop(key)
        self._per_action[tally.action] -= 1
        if self._per_action[tally.action] <= 0:
            del self._per_action[tally.action]
        if tally.repeats:
            self.trail.append(tally.action, tally.actor, tally.outcome, tally.target, tally.origin, {
                **tally.details, "reason": tally.reason, "source": tally.source, "repeats": tally.repeats,
                "first_ts": tally.first_ms, "last_ts": tally.last_ms, "window_seconds": self.window})

    def flush(self, everything: bool = False) -> int:
        """Write the windows that have ended (all of them, at a stop); how many tallies were closed."""
        now = self.clock()
        due = [k for k, t in self._open.items() if everything or now >= t.ends]
        if due:
            with self.store.db.transaction():
                for key in due:
                    self._close(key)
        return len(due)

    def next_due(self) -> float | None:
        """Seconds until the next window ends (None: none open)."""
        if not self._open:
            return None
        return max(0.0, min(t.ends for t in self._open.values()) - self.clock())

    def __len__(self) -> int:
        return len(self._open)
