"""In-process fan-out from the chat logic to the citizen's open connections.

Signals carry no message data: a connection that hears "messages" reads the
store from the last seq it sent, so order and exactly-once come from the store,
not from this queue.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable

from ..background import Mailbox


class Subscription:
    def __init__(self, hub: "ChatHub", chat_id: str) -> None:
        self.hub, self.chat_id = hub, chat_id
        self.signals: Mailbox[dict[str, Any]] = Mailbox(1000)
        self.queue_pending = False      # a "queue" signal waits unread: another one would say nothing new

    async def get(self) -> dict[str, Any]:
        signal = await self.signals.get()
        if signal["kind"] == "queue":
            self.queue_pending = False
        return signal

    def close(self) -> None:
        self.hub._closed(self)


PRUNE_EVERY_MS = 60_000


class ChatHub:
    def __init__(self, keep_left_seconds: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        """``keep_left_seconds``: how long to remember when a chat's last page closed (``last_seen``), at least
        the longest a waiting chat may go unseen before it counts as abandoned (0: never asked, never kept).
        Remembered longer, it would grow with every chat served: a page usually closes after its chat ended, so
        the chat's own end cannot forget it (tracemalloc over cycles of bench/load.py: an entry per chat served)."""
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._left: dict[str, int] = {}        # chat → when its last open connection closed (ms)
        self._keep_left_ms = int(keep_left_seconds * 1000)
        self._clock = clock
        self._pruned_ms = 0

    def subscribe(self, chat_id: str) -> Subscription:
        sub = Subscription(self, chat_id)
        self._subs[chat_id].add(sub)
        return sub

    def _closed(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.chat_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.chat_id]
                if self._keep_left_ms:
                    now = self._now_ms()
                    self._left[sub.chat_id] = now
                    if now - self._pruned_ms >= PRUNE_EVERY_MS:
                        self._pruned_ms = now
                        self._left = {c: t for c, t in self._left.items() if now - t <= self._keep_left_ms}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def last_seen(self, chat_id: str) -> int | None:
        """When the citizen last had the chat open (ms): now while a connection is open, else when the last one
        closed in this process's life (None: not since start-up)."""
        if self._subs.get(chat_id):
            return self._now_ms()
        return self._left.get(chat_id)

    @property
    def remembered(self) -> int:
        """How many chats' last page closes are remembered (tests, benchmarks)."""
        return len(self._left)

    def forget(self, chat_id: str) -> None:
        """A finished chat: nothing more to remember about its connections."""
        self._left.pop(chat_id, None)

    def connections(self, chat_id: str | None = None) -> int:
        if chat_id is not None:
            return len(self._subs.get(chat_id, ()))
        return sum(len(s) for s in self._subs.values())

    def _publish(self, chat_id: str, signal: dict[str, Any]) -> None:
        for sub in list(self._subs.get(chat_id, ())):
            sub.signals.put_nowait(signal)    # dropped when full: a stuck client re-reads the store when it catches up

    def messages(self, chat_id: str) -> None:
        self._publish(chat_id, {"kind": "messages"})

    def typing(self, chat_id: str, active: bool) -> None:
        self._publish(chat_id, {"kind": "typing", "active": active})

    def queue(self, chat_id: str) -> None:
        """The queue moved: the chat's position or estimate may have changed.

        At most one such signal waits per connection: a thousand closes while a citizen's page is busy
        leave one "read your place again", not a thousand."""
        for sub in list(self._subs.get(chat_id, ())):
            if not sub.queue_pending and sub.signals.put_nowait({"kind": "queue"}):
                sub.queue_pending = True

    def read(self, chat_id: str) -> None:
        """An officer's client marked the conversation read further."""
        self._publish(chat_id, {"kind": "read"})

    def status(self, chat_id: str, state: str) -> None:
        self._publish(chat_id, {"kind": "status", "state": state})
