"""Token buckets: what one source, and everyone together, may ask for how often.

    request from source s ──► Limit.take(s) ── None ──► served (one token from s's bucket and one overall)
                                           └─ Refusal(wait, scope) ──► 429, Retry-After: wait (nothing taken)

A ``Limit`` is a bucket per source plus one overall bucket.  The per-source bucket stops a script
on one address; the overall one protects the homeserver (and the officers' queue) from many
addresses at once.  A request takes a token from both or from neither, so a refused request
costs its source nothing more, and a source refused by the overall bucket keeps its own tokens.

Memory is bounded: a full bucket is the same as no bucket, so full ones are forgotten once there
are many; and a new source's bucket is only made when the overall bucket has a token for it, so
how many non-full buckets can exist at once is bounded by the overall rate.  IPv6 sources are
counted per /64 (one customer's prefix), or a single client could use a fresh address per request.

Pure bookkeeping on the event loop thread; no store, no I/O.  Used by the visitor API (chat
creation, offline messages, uploads, and the WebSocket's per-chat message rate) and by the
console (sign-in attempts).
"""
from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Callable


class TokenBucket:
    """``capacity`` tokens, refilled at ``per_second``; ``take`` answers 0 (taken) or seconds to wait."""

    def __init__(self, capacity: float, per_second: float, now: float) -> None:
        self.capacity, self.per_second = capacity, per_second
        self.tokens, self.at = capacity, now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now); takes nothing."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_second

    def take(self, now: float) -> float:
        wait = self.wait(now)
        if wait == 0:
            self.tokens -= 1
        return wait

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


def whole_seconds(wait: float) -> int:
    """A wait as Retry-After says it: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


class KeyedBuckets:
    """A token bucket per key, made on first use; full (idle) ones are forgotten once there are many."""

    PRUNE_AT = 10_000       # buckets kept before the full ones are forgotten

    def __init__(self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.per_second, self.clock = burst, per_second, clock
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.PRUNE_AT:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            bucket = self._buckets[key] = TokenBucket(self.burst, self.per_second, now)
        return bucket

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may go (0: now), without taking anything or making a bucket."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(now)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class Rate:
    """``burst`` requests at once, then ``per_hour`` on average (a config value {burst, per_hour})."""
    burst: int
    per_hour: float

    @property
    def per_second(self) -> float:
        return self.per_hour / 3600.0

    @classmethod
    def of(cls, value: dict) -> "Rate":
        return cls(int(value["burst"]), float(value["per_hour"]))


@dataclass(frozen=True)
class Refusal:
    """Why a request may not go now: ``scope`` names the bucket ("per_address" or "overall")."""
    retry_after: int        # whole seconds
    scope: str


def source_key(address: str) -> str:
    """What a per-address bucket counts: the address, or its /64 for IPv6; anything else as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Limit:
    """A bucket per source and one overall: ``take(source)`` is None (served) or a ``Refusal``."""

    def __init__(self, name: str, per_source: Rate, overall: Rate,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.clock = name, clock
        self.per_source = KeyedBuckets(per_source.burst, per_source.per_second, clock)
        self.overall = TokenBucket(overall.burst, overall.per_second, clock())

    def take(self, source: str) -> Refusal | None:
        now, key = self.clock(), source_key(source)
        own = self.per_source.wait(key, now)
        if own:
            return Refusal(whole_seconds(own), "per_address")
        everyone = self.overall.wait(now)
        if everyone:
            return Refusal(whole_seconds(everyone), "overall")
        self.per_source.bucket(key, now).take(now)      # a new source's bucket is made only here
        self.overall.take(now)
        return None
