"""The inbound pump's intake of a stored appservice transaction (bridge/chats/inbound.py, process_transaction):
its crypto payload first, then its room events and its "processed" mark in one commit, so a failure part-way
leaves the transaction whole for the next pass. On a real store; the crypto side is a recorder."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge.chats.inbound import InboundPump
from bridge.store import Store
from bridge.store.room_events import DONE, PENDING

ROOM = "!chat:police.example"
BODY = {"events": [
    {"event_id": "$officer1", "room_id": ROOM, "type": "m.room.encrypted", "sender": "@o1:police.example",
     "origin_server_ts": 1, "content": {}},
    {"event_id": "$echo", "room_id": ROOM, "type": "m.room.encrypted", "sender": "@webchat_a:police.example",
     "origin_server_ts": 2, "content": {}},
    {"event_id": "$officer2", "room_id": ROOM, "type": "m.room.encrypted", "sender": "@o1:police.example",
     "origin_server_ts": 3, "content": {}}]}


class Crypto:
    def __init__(self) -> None:
        self.fed: list[dict] = []

    async def feed_transaction(self, body: dict, has_device) -> None:  # type: ignore[no-untyped-def]
        self.fed.append(body)


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "precinct.db")
    yield s
    s.close()


def _pump(store: Store, crypto: Crypto) -> InboundPump:
    puppets = SimpleNamespace(is_puppet=lambda u: u.startswith("@webchat_"), has_device=lambda u: True)
    return InboundPump(store, crypto, puppets, SimpleNamespace(bot="@precinct:police.example"),  # type: ignore[arg-type]
                       [])


async def test_a_transaction_is_taken_in_with_one_commit_after_its_crypto(store: Store):
    crypto = Crypto()
    store.transactions.store("t1", BODY, None)
    commits: list[str] = []
    store.db.db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql.startswith("COMMIT") else None)
    try:
        [(key, body)] = store.transactions.unprocessed()
        await _pump(store, crypto).process_transaction(key, body)
    finally:
        store.db.db.conn.set_trace_callback(None)
    assert crypto.fed == [BODY]
    assert [e.event_id for e in store.room_events.pending(ROOM)] == ["$officer1", "$officer2"]
    assert store.room_events.count(DONE) == 1                 # our own echo: done on arrival
    assert store.transactions.unprocessed() == []
    assert len(commits) == 1, commits                         # three events and the mark: one write of the log


async def test_a_failure_part_way_leaves_the_whole_transaction_for_the_next_pass(store: Store):
    crypto = Crypto()
    store.transactions.store("t1", BODY, None)
    pump = _pump(store, crypto)
    add = store.room_events.add
    calls = 0

    def failing_add(event: dict, handled: bool = False) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("write failed")
        return add(event, handled)
    store.room_events.add = failing_add  # type: ignore[method-assign]
    [(key, body)] = store.transactions.unprocessed()
    with pytest.raises(OSError):
        await pump.process_transaction(key, body)
    # Nothing of it was kept: not the first event, not the mark.
    assert store.room_events.count(PENDING) == 0 and store.room_events.count(DONE) == 0
    assert [k for k, _ in store.transactions.unprocessed()] == [key]
    store.room_events.add = add  # type: ignore[method-assign]
    await pump.process_transaction(key, body)
    assert [e.event_id for e in store.room_events.pending(ROOM)] == ["$officer1", "$officer2"]
    assert store.transactions.unprocessed() == []
    assert len(crypto.fed) == 2          # fed again, as after a crash between feeding and the commit
