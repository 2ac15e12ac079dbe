"""The WebSocket's flood bookkeeping (bridge/web/flood.py) with a fake clock; the real bridge is in
tests/integration/test_ws_flood.py."""
from __future__ import annotations

import asyncio

from bridge.web.flood import ChatRates, SocketCounts, TypingCoalescer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_then_the_rate_applies_and_refills():
    clock = Clock()
    rates = ChatRates(burst=20, per_minute=30, clock=clock)
    assert [rates.take("a") for _ in range(20)] == [0] * 20
    assert rates.take("a") == 2              # 30/min: one every 2 s
    assert rates.take("b") == 0              # another chat has its own bucket
    clock.now += 2
    assert rates.take("a") == 0
    assert rates.take("a") >= 1


def test_idle_buckets_are_forgotten_when_many():
    clock = Clock()
    rates = ChatRates(burst=2, per_minute=60, clock=clock)
    rates.PRUNE_AT = 10
    for i in range(10):
        rates.take(f"c{i}")
    clock.now += 100
    rates.take("new")
    assert len(rates._buckets) == 1


def test_socket_counts_cap_per_address_and_per_chat():
    counts = SocketCounts(per_chat=2, per_address=3)
    assert [counts.open("1.2.3.4") for _ in range(4)] == [True, True, True, False]
    assert counts.open("5.6.7.8")
    counts.closed("1.2.3.4")
    assert counts.open("1.2.3.4")
    assert [counts.join("chat") for _ in range(3)] == [True, True, False]
    counts.left("chat")
    assert counts.join("chat")


class _Chat:
    id = "chat-1"


def test_typing_flood_is_coalesced_to_a_few_calls_and_ends_in_the_last_state():
    sent: list[bool] = []

    async def send(chat, active):  # type: ignore[no-untyped-def]
        sent.append(active)
        return True

    async def main() -> None:
        typing = TypingCoalescer(send, interval=0.05)
        for i in range(20_000):
            typing.set(_Chat(), i % 2 == 0)
        typing.set(_Chat(), False)
        tasks = [s.task for s in typing._chats.values() if s.task]
        assert len(tasks) == 1                   # one task for the chat, not one per frame
        await asyncio.wait_for(tasks[0], timeout=30)
        assert typing._chats == {}               # idle: nothing kept

    asyncio.run(main())
    assert sent[-1] is False and len(sent) <= 2


def test_typing_before_the_chat_has_a_room_is_not_taken_as_told():
    """The journey that broke: typing while the chat has no room (a no-op), stop, then typing again
    once the room exists; the second start must reach the homeserver although it equals the first."""
    has_room = False
    told: list[bool] = []

    async def send(chat, active):  # type: ignore[no-untyped-def]
        if not has_room:
            return False
        told.append(active)
        return True

    async def main() -> None:
        nonlocal has_room
        typing = TypingCoalescer(send, interval=0.05)
        typing.set(_Chat(), True)            # first keystroke: no room yet
        await asyncio.sleep(0.01)            # ... and the coalescer has tried (nobody to tell)
        typing.set(_Chat(), False)           # message sent: the room is made
        has_room = True
        await asyncio.sleep(0)
        typing.set(_Chat(), True)            # typing the answer
        for _ in range(200):
            if told and told[-1] is True:
                break
            await asyncio.sleep(0.01)
        await typing.close()

    asyncio.run(main())
    assert told and told[-1] is True
