"""What one citizen's WebSocket may cost: a message rate per chat, typing coalesced, sockets capped.

    frames of one chat ──► ChatRates.take(chat) ── 0 ──► stored, acked
                                              └─ s ──► error rate_limited, retry_after=s (nothing stored)
    typing frames ───────► TypingCoalescer.set(chat, active)
                              one task per chat at most: sends the latest state when it differs from
                              the last one sent, then waits ``interval`` before the next call
    handshake ───────────► SocketCounts: per address (before the upgrade, authenticated or not)
                           and per chat (after auth)

The token buckets are ``bridge.limits``' (the same ones that limit chat creation and uploads).
Pure bookkeeping plus one small task per typing chat; no store, no Matrix here (the typing call is
handed in).  All state lives on the event loop thread.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..limits import KeyedBuckets, whole_seconds

log = logging.getLogger(__name__)

REFRESH_SECONDS = 15.0     # an active state is re-sent this often (Matrix typing times out after 20 s)


class ChatRates(KeyedBuckets):
    """A token bucket per chat for the citizen's messages (WebSocket and POST share it)."""

    def __init__(self, burst: int, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(burst, per_minute / 60.0, clock)

    def take(self, chat_id: str) -> int:
        """0 when the message may go; otherwise whole seconds (at least 1) until it may."""
        now = self.clock()
        wait = self.bucket(chat_id, now).take(now)
        return 0 if wait == 0 else whole_seconds(wait)

    def give_back(self, chat_id: str) -> None:
        """Return a token taken for a message that was then not stored (the disk full)."""
        bucket = self.bucket(chat_id, self.clock())
        bucket.tokens = min(bucket.capacity, bucket.tokens + 1)


@dataclass
class _Typing:
    chat: Any
    wanted: bool
    sent: bool | None = None
    sent_at: float = 0.0
    task: asyncio.Task | None = field(default=None, repr=False)


class TypingCoalescer:
    """The citizen's typing as the homeserver sees it: only changes of state (and a refresh of a long
    active state) are sent, at most one call per chat every ``interval`` seconds; in between only the
    latest state is kept, so a flood of frames costs a dict entry and at most one task per chat.

    ``send`` answers whether the homeserver was told: a chat with no Matrix room yet (it has not
    spoken) has nobody to tell, so that state is not taken as sent, and the next frame after the room
    exists goes through (an active state not told is tried again each interval)."""

    def __init__(self, send: Callable[[Any, bool], Awaitable[bool]], interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.send, self.interval, self.clock = send, interval, clock
        self._chats: dict[str, _Typing] = {}
        self.calls = 0          # homeserver typing calls made (for tests and /metrics)

    def set(self, chat: Any, active: bool) -> None:
        state = self._chats.get(chat.id)
        if state is None:
            state = self._chats[chat.id] = _Typing(chat, active)
        state.chat, state.wanted = chat, active
        if active and state.sent and self.clock() - state.sent_at >= REFRESH_SECONDS:
            state.sent = None       # still typing after a long while: say so again before it times out
        if state.task is None and state.wanted != state.sent:
            state.task = asyncio.create_task(self._run(state))

    async def _run(self, state: _Typing) -> None:
        try:
            while state.wanted != state.sent:
                wanted = state.wanted
                try:
                    told = await self.send(state.chat, wanted)
                except Exception as e:      # typing is best effort
                    log.info("typing not sent: %s", e)
                    told = False
                if told:
                    self.calls += 1
                    state.sent, state.sent_at = wanted, self.clock()
                else:
                    state.sent = None       # not told (no room yet, or the call failed)
                await asyncio.sleep(self.interval)      # the rate: one call per chat per interval
                if not told and not state.wanted:
                    break       # nothing to take back: a typing notice times out by itself
        finally:
            state.task = None
            if self._chats.get(state.chat.id) is state and not state.wanted and not state.sent:
                del self._chats[state.chat.id]      # idle again: nothing kept for this chat

    async def close(self) -> None:
        tasks = [s.task for s in self._chats.values() if s.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SocketCounts:
    """Open WebSockets per client address (from the handshake) and per chat (once authenticated)."""

    def __init__(self, per_chat: int, per_address: int) -> None:
        self.per_chat, self.per_address = per_chat, per_address
        self._by_address: dict[str, int] = defaultdict(int)
        self._by_chat: dict[str, int] = defaultdict(int)

    def open(self, address: str) -> bool:
        if self._by_address[address] >= self.per_address:
            return False
        self._by_address[address] += 1
        return True

    def closed(self, address: str) -> None:
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]

    def join(self, chat_id: str) -> bool:
        if self._by_chat[chat_id] >= self.per_chat:
            return False
        self._by_chat[chat_id] += 1
        return True

    def left(self, chat_id: str) -> None:
        self._by_chat[chat_id] -= 1
        if self._by_chat[chat_id] <= 0:
            del self._by_chat[chat_id]


class ReadCoalescer:
    """How far the citizen has read the officers' messages, as the homeserver hears it: the latest
    ``seq`` per chat, at most one receipt per chat every ``interval`` seconds, only when it moved forward;
    a page sending a read frame per message it shows costs a dict entry, not a request each."""

    def __init__(self, send: Callable[[Any, int], Awaitable[bool]], interval: float = 1.0) -> None:
        self.send, self.interval = send, interval
        self._wanted: dict[str, tuple[Any, int]] = {}
        self._sent: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self.calls = 0          # receipts sent (for tests)

    def set(self, chat: Any, seq: int) -> None:
        if seq <= self._sent.get(chat.id, 0) or seq <= self._wanted.get(chat.id, (None, 0))[1]:
            return
        self._wanted[chat.id] = (chat, seq)
        if chat.id not in self._tasks:
            self._tasks[chat.id] = asyncio.create_task(self._run(chat.id))

    async def _run(self, chat_id: str) -> None:
        try:
            while (wanted := self._wanted.pop(chat_id, None)) is not None:
                chat, seq = wanted
                try:
                    told = await self.send(chat, seq)
                except Exception as e:          # a receipt is best effort
                    log.info("read receipt not sent: %s", e)
                    told = False
                if told:
                    self.calls += 1
                    self._sent[chat_id] = seq
                await asyncio.sleep(self.interval)
        finally:
            del self._tasks[chat_id]
            self._sent.pop(chat_id, None)       # nothing kept per chat once quiet (the page only moves forward)
