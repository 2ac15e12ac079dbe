"""The SQLite store: schema and migrations, numbering, uniqueness that makes every path idempotent, atomicity."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bridge.store import Store
from bridge.store.chats import ACTIVE, CLOSED, WAITING
from bridge.store.db import MIGRATIONS, Database
from bridge.store.messages import OFFICER, SYSTEM, VISITOR
from bridge.store.transactions import Transactions

TABLES = {"chats", "puppets", "messages", "outbox", "as_transactions", "room_events", "schema_version"}


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "precinct.db")
    yield s
    s.close()


def new_chat(store: Store, n: int, topic: str = "general", agency: str = "central"):
    return store.chats.create(f"chat-{n}", f"hash-{n}", topic, agency, None, None)


def ready_puppet(store: Store, user_id: str) -> None:
    """A complete pool puppet: identity prepared and its room made ahead."""
    store.puppets.add(user_id, "DEVICE" + user_id[-1])
    for step in ("registered", "device_created", "cross_signed"):
        store.puppets.mark(user_id, step)
    store.puppets.mark(user_id, "room_id", f"!pool-{user_id[-1]}:p")


# ---- schema and migrations -------------------------------------------------------------------------

def test_migrations_create_the_schema(tmp_path: Path):
    db = Database(tmp_path / "sub" / "dir" / "precinct.db")
    try:
        assert db.version == len(MIGRATIONS)
        assert TABLES <= set(db.db.table_names())
        indexes = {tuple(i.columns): i.unique for i in db.db["messages"].indexes}
        assert indexes[("chat_id", "client_id")] and indexes[("event_id",)]
        assert {tuple(i.columns): i.unique for i in db.db["outbox"].indexes}[("txn_id",)]
        assert {tuple(i.columns): i.unique for i in db.db["room_events"].indexes}[("event_id",)]
        assert {tuple(i.columns): i.unique for i in db.db["chats"].indexes}[("token_hash",)]
    finally:
        db.close()


def test_reopening_is_idempotent_and_keeps_data(tmp_path: Path):
    path = tmp_path / "precinct.db"
    s = Store.open(path)
    new_chat(s, 1)
    s.messages.add("chat-1", SYSTEM, "text", "hello")
    version = s.db.version
    s.close()
    for _ in range(2):
        s = Store.open(path)
        try:
            assert s.db.version == version == len(MIGRATIONS)
            assert s.db.row("SELECT COUNT(*) AS n FROM schema_version")["n"] == 1
            assert s.chats.get("chat-1") is not None
            assert [m.body for m in s.messages.since("chat-1", 0)] == ["hello"]
        finally:
            s.close()


def test_wal_and_full_sync(store: Store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL


# ---- chats -----------------------------------------------------------------------------------------

def test_chat_numbers_are_sequential_from_first_number(tmp_path: Path):
    s = Store.open(tmp_path / "a.db", first_chat_number=1001)
    try:
        assert [new_chat(s, i).number for i in range(3)] == [1001, 1002, 1003]
    finally:
        s.close()
    s = Store.open(tmp_path / "b.db", first_chat_number=7)
    try:
        assert [new_chat(s, i).number for i in range(2)] == [7, 8]
    finally:
        s.close()


def test_chat_number_continues_after_reopen(tmp_path: Path):
    path = tmp_path / "precinct.db"
    s = Store.open(path)
    new_chat(s, 1)
    s.close()
    s = Store.open(path)
    try:
        assert new_chat(s, 2).number == 1002
    finally:
        s.close()


def test_new_chat_is_waiting_and_found_by_token_hash(store: Store):
    chat = store.chats.create("c1", "h1", "general", "central", "Alex", "en")
    assert (chat.state, chat.display_name, chat.language, chat.room_id) == (WAITING, "Alex", "en", None)
    assert store.chats.by_token_hash("h1").id == "c1"
    assert store.chats.by_token_hash("nope") is None
    assert [c.id for c in store.chats.without_room()] == ["c1"]


def test_chat_state_changes(store: Store):
    new_chat(store, 1)
    store.chats.set_puppet("chat-1", "@webchat_1:p")
    store.chats.set_room("chat-1", "!room:p")
    assert store.chats.by_room("!room:p").id == "chat-1"
    assert store.chats.without_room() == [] and [c.id for c in store.chats.open_with_room()] == ["chat-1"]
    store.chats.set_state("chat-1", ACTIVE, officer="@o:p")
    store.chats.set_state("chat-1", CLOSED)
    chat = store.chats.get("chat-1")
    assert chat.state == CLOSED and chat.officer == "@o:p" and chat.closed_ts
    assert store.chats.open_with_room() == []


def test_token_hash_is_unique(store: Store):
    store.chats.create("c1", "same", "general", "central", None, None)
    with pytest.raises(sqlite3.IntegrityError):
        store.chats.create("c2", "same", "general", "central", None, None)


# ---- messages --------------------------------------------------------------------------------------

def test_seq_per_chat_independent(store: Store):
    new_chat(store, 1)
    new_chat(store, 2)
    seqs = [store.messages.add("chat-1", VISITOR, "text", "a1").seq,
            store.messages.add("chat-2", VISITOR, "text", "b1").seq,
            store.messages.add("chat-1", OFFICER, "text", "a2").seq,
            store.messages.add("chat-1", SYSTEM, "text", "a3").seq,
            store.messages.add("chat-2", OFFICER, "text", "b2").seq]
    assert seqs == [1, 1, 2, 3, 2]
    assert [(m.seq, m.body) for m in store.messages.since("chat-1", 0)] == [(1, "a1"), (2, "a2"), (3, "a3")]
    assert [m.body for m in store.messages.since("chat-1", 2)] == ["a3"]
    assert [m.body for m in store.messages.since("chat-2", 0)] == ["b1", "b2"]
    assert store.messages.since("chat-1", 0, limit=2)[-1].seq == 2


def test_message_fields_round_trip(store: Store):
    new_chat(store, 1)
    m = store.messages.add("chat-1", OFFICER, "edit", "new", sender="PC Smith", sender_mxid="@o:p",
                           event_id="$e", target_seq=4, ts=1234)
    assert store.messages.get("chat-1", m.seq) == m
    assert (m.kind, m.sender, m.sender_mxid, m.event_id, m.target_seq, m.ts) == \
        ("edit", "PC Smith", "@o:p", "$e", 4, 1234)
    assert store.messages.by_event_id("$e") == m


def test_client_id_unique_per_chat(store: Store):
    new_chat(store, 1)
    new_chat(store, 2)
    store.messages.add("chat-1", VISITOR, "text", "hi", client_id="c1")
    with pytest.raises(sqlite3.IntegrityError):
        store.messages.add("chat-1", VISITOR, "text", "hi again", client_id="c1")
    store.messages.add("chat-2", VISITOR, "text", "hi", client_id="c1")     # another chat may use it
    assert store.messages.by_client_id("chat-1", "c1").body == "hi"
    assert [m.body for m in store.messages.since("chat-1", 0)] == ["hi"]
    # Messages without a client_id (officer, system) are not constrained by it.
    store.messages.add("chat-1", SYSTEM, "text", "one")
    store.messages.add("chat-1", SYSTEM, "text", "two")


def test_event_id_unique(store: Store):
    new_chat(store, 1)
    new_chat(store, 2)
    store.messages.add("chat-1", OFFICER, "text", "hi", event_id="$e1")
    with pytest.raises(sqlite3.IntegrityError):
        store.messages.add("chat-2", OFFICER, "text", "hi", event_id="$e1")
    m = store.messages.add("chat-1", VISITOR, "text", "mine", client_id="c")
    with pytest.raises(sqlite3.IntegrityError):
        store.messages.set_event_id("chat-1", m.seq, "$e1")
    store.messages.set_event_id("chat-1", m.seq, "$e2")
    assert store.messages.by_event_id("$e2").client_id == "c"


# ---- appservice transactions and room events -------------------------------------------------------

def test_a_retried_transaction_is_stored_once_but_a_reused_id_with_new_content_is_new(store: Store):
    assert store.transactions.store("t1", {"events": [1]}) is True
    assert store.transactions.store("t1", {"events": [1]}) is False          # the homeserver's retry
    [(key, body)] = store.transactions.unprocessed()
    assert body == {"events": [1]} and key.startswith("t1#")
    store.transactions.mark_processed(key)
    assert store.transactions.unprocessed() == []
    assert store.transactions.store("t1", {"events": [1]}) is False          # still a retry after processing
    # Synapse numbers transactions from 1 again after its own restart: same id, new content.
    assert store.transactions.store("t1", {"events": [2]}) is True
    assert [b for _, b in store.transactions.unprocessed()] == [{"events": [2]}]


def test_a_transaction_is_stored_as_it_came_and_the_pump_gets_the_parsed_body_without_parsing_it_again(store: Store):
    text = '{"events":[{"content":{"body":"caf\\u00e9 \u260e"}}],  "n": 1}'
    body = json.loads(text)
    assert store.transactions.store("t1", body, text) is True
    assert store.transactions.store("t1", body, text) is False               # the homeserver's retry
    [(key, got)] = store.transactions.unprocessed()
    assert got is body                                                       # the endpoint's parse, not another
    assert store.db.row("SELECT body FROM as_transactions WHERE txn_id = ?", [key])["body"] == text
    # After a restart the stored text is the truth, parsed again.
    [(again, read)] = Transactions(store.db).unprocessed()
    assert again == key and read == body and read is not body
    store.transactions.mark_processed(key)
    assert store.transactions.unprocessed() == [] and Transactions(store.db).unprocessed() == []


def test_repeated_event_id_is_not_queued_twice(store: Store):
    event = {"event_id": "$e1", "room_id": "!r:p", "type": "m.room.message", "sender": "@o:p", "content": {}}
    assert store.room_events.add(event) is True
    assert store.room_events.add(dict(event, content={"body": "changed"})) is False
    pending = store.room_events.pending("!r:p")
    assert [p.event_id for p in pending] == ["$e1"] and pending[0].event["content"] == {}
    store.room_events.finish(pending[0].stream)
    assert store.room_events.add(event) is False
    assert store.room_events.pending("!r:p") == []


def test_room_events_keep_arrival_order(store: Store):
    for i, room in enumerate(["!b:p", "!a:p", "!b:p", "!a:p"]):
        store.room_events.add({"event_id": f"$e{i}", "room_id": room, "type": "m.room.message"})
    assert store.room_events.rooms_pending() == ["!b:p", "!a:p"]
    assert [e.event_id for e in store.room_events.pending("!a:p")] == ["$e1", "$e3"]


def test_waiting_events_of_a_room_are_handled_in_the_order_they_were_written(store: Store):
    """An event pushed late (Synapse sent a stranded transaction with its next recovery, as in the kill loop:
    "re: c13 m2" after m3..m5) is handled before those written after it, when they are still waiting."""
    for event_id, ts in (("$m3", 1_003), ("$m4", 1_004), ("$m5", 1_005), ("$m2", 1_002), ("$m5b", 1_005)):
        store.room_events.add({"event_id": event_id, "room_id": "!r:p", "type": "m.room.encrypted",
                               "origin_server_ts": ts})
    assert [e.event_id for e in store.room_events.pending("!r:p")] == ["$m2", "$m3", "$m4", "$m5", "$m5b"]


# ---- atomicity -------------------------------------------------------------------------------------

def test_transaction_rolls_back_every_write_on_exception(store: Store):
    new_chat(store, 1)
    with pytest.raises(RuntimeError):
        with store.db.transaction():
            msg = store.messages.add("chat-1", VISITOR, "text", "hello", client_id="c1")
            store.outbox.add("chat-1", "txn-1", "m.room.message", {"body": "hello"}, message_seq=msg.seq)
            raise RuntimeError("crash between the writes and the commit")
    assert store.messages.since("chat-1", 0) == []
    assert store.outbox.next_for("chat-1") is None and store.outbox.pending_count() == 0


def test_failing_statement_rolls_back_the_earlier_writes(store: Store):
    new_chat(store, 1)
    store.outbox.add("chat-1", "txn-taken", "m.room.message", {"body": "first"})
    with pytest.raises(sqlite3.IntegrityError):
        with store.db.transaction():
            msg = store.messages.add("chat-1", VISITOR, "text", "hello", client_id="c1")
            store.outbox.add("chat-1", "txn-taken", "m.room.message", {"body": "hello"}, message_seq=msg.seq)
    assert store.messages.by_client_id("chat-1", "c1") is None
    assert store.outbox.pending_count() == 1
    # The connection is usable afterwards and the next write commits.
    msg = store.messages.add("chat-1", VISITOR, "text", "hello", client_id="c1")
    assert msg.seq == 1


def test_rolled_back_transaction_is_not_on_disk(tmp_path: Path):
    path = tmp_path / "precinct.db"
    s = Store.open(path)
    new_chat(s, 1)
    with pytest.raises(RuntimeError):
        with s.db.transaction():
            s.messages.add("chat-1", VISITOR, "text", "lost")
            raise RuntimeError()
    with s.db.transaction():
        s.messages.add("chat-1", VISITOR, "text", "kept")
    other = sqlite3.connect(path)
    try:
        assert other.execute("SELECT body FROM messages").fetchall() == [("kept",)]
    finally:
        other.close()
        s.close()


def test_writes_outside_a_transaction_are_committed_at_once(tmp_path: Path):
    path = tmp_path / "precinct.db"
    s = Store.open(path)
    try:
        new_chat(s, 1)
        s.outbox.add("chat-1", "t1", "m.room.message", {"body": "x"})
        assert s.transactions.store("txn", {}) is True
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT txn_id FROM outbox").fetchall() == [("t1",)]
            [(key,)] = other.execute("SELECT txn_id FROM as_transactions").fetchall()
            assert key.startswith("txn#")
        finally:
            other.close()
    finally:
        s.close()


def test_nested_transaction_failure_rolls_back_only_the_inner_part(store: Store):
    new_chat(store, 1)
    with store.db.transaction():
        store.messages.add("chat-1", SYSTEM, "text", "outer")
        with pytest.raises(RuntimeError):
            with store.db.transaction():
                store.messages.add("chat-1", SYSTEM, "text", "inner")
                raise RuntimeError()
    assert [m.body for m in store.messages.since("chat-1", 0)] == ["outer"]


# ---- outbox ----------------------------------------------------------------------------------------

def test_outbox_order_per_chat(store: Store):
    for i, chat in enumerate(["a", "b", "a", "a", "b"]):
        store.outbox.add(chat, f"t{i}", "m.room.message", {"body": f"{chat}{i}"}, message_seq=i)
    assert sorted(store.outbox.chats_pending()) == ["a", "b"]
    sent = []
    while (item := store.outbox.next_for("a")) is not None:
        sent.append((item.txn_id, item.content["body"], item.message_seq))
        store.outbox.mark_sent(item.id, f"$ev{item.id}")
    assert sent == [("t0", "a0", 0), ("t2", "a2", 2), ("t3", "a3", 3)]
    assert store.outbox.chats_pending() == ["b"]
    assert store.outbox.next_for("b").txn_id == "t1"
    assert store.outbox.pending_count() == 2


def test_outbox_failed_attempt_keeps_the_item_and_its_txn_id(store: Store):
    store.outbox.add("a", "t1", "m.room.message", {"body": "x"})
    item = store.outbox.next_for("a")
    store.outbox.mark_attempt_failed(item.id, "timeout " * 200)
    again = store.outbox.next_for("a")
    assert (again.id, again.txn_id, again.attempts) == (item.id, "t1", 1)


def test_outbox_txn_id_unique(store: Store):
    store.outbox.add("a", "t1", "m.room.message", {})
    with pytest.raises(sqlite3.IntegrityError):
        store.outbox.add("b", "t1", "m.room.message", {})


# ---- puppets ---------------------------------------------------------------------------------------

def test_claim_ready_gives_each_ready_puppet_to_one_chat(store: Store):
    ready_puppet(store, "@webchat_1:p")
    store.puppets.add("@webchat_2:p", "D2")                     # registered only: not ready
    store.puppets.mark("@webchat_2:p", "registered")
    ready_puppet(store, "@webchat_3:p")
    store.puppets.add("@webchat_4:p", "D4")                     # identity ready, room not made yet
    for step in ("registered", "device_created", "cross_signed"):
        store.puppets.mark("@webchat_4:p", step)
    claimed = [store.puppets.claim_ready(f"chat-{i}") for i in range(4)]
    users = [p.user_id if p else None for p in claimed]
    assert len(set(users[:2])) == 2
    assert set(users[:2]) == {"@webchat_1:p", "@webchat_3:p"}
    assert users[2:] == [None, None]
    for i, p in enumerate(claimed[:2]):
        assert p.chat_id == f"chat-{i}" and p.ready
        assert store.puppets.for_chat(f"chat-{i}").user_id == p.user_id
    assert [p.user_id for p in store.puppets.pool()] == ["@webchat_2:p", "@webchat_4:p"]


def test_claim_ready_across_connections(tmp_path: Path):
    """Two connections to one database (e.g. a restart overlapping): still one chat per puppet."""
    path = tmp_path / "precinct.db"
    a, b = Store.open(path), Store.open(path)
    try:
        ready_puppet(a, "@webchat_1:p")
        first, second = a.puppets.claim_ready("chat-a"), b.puppets.claim_ready("chat-b")
        assert first is not None and first.user_id == "@webchat_1:p"
        assert second is None
        assert b.puppets.get("@webchat_1:p").chat_id == "chat-a"
    finally:
        a.close()
        b.close()


def test_puppet_steps(store: Store):
    p = store.puppets.add("@webchat_9:p", "DEV")
    assert not p.ready and p.chat_id is None
    store.puppets.mark("@webchat_9:p", "master_key", "KEY")
    with pytest.raises(ValueError):
        store.puppets.mark("@webchat_9:p", "chat_id", "x")
    assert store.puppets.exists("@webchat_9:p") and not store.puppets.exists("@nobody:p")
    store.puppets.assign("@webchat_9:p", "chat-9")
    assert store.puppets.for_chat("chat-9").master_key == "KEY"


def test_the_schema_snapshot_beside_the_migrations_is_what_they_make():
    from bridge.store.db import schema_snapshot
    snapshot = Path(__file__).parents[2] / "bridge" / "store" / "schema.sql"
    assert snapshot.read_text(encoding="utf-8") == schema_snapshot(), \
        "bridge/store/schema.sql is stale: python -m bridge.store.db > bridge/store/schema.sql"


def test_a_database_from_a_newer_precinct_is_refused_untouched(tmp_path: Path, capsys):
    """An older bridge must not run on a newer schema (nor on a backup restored in the wrong order)."""
    import yaml

    from bridge import __main__ as cli
    from bridge.store.db import StoreTooNew
    path = tmp_path / "precinct.db"
    Database(path).db.conn.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", [len(MIGRATIONS) + 1])
    before = path.read_bytes()
    with pytest.raises(StoreTooNew, match=f"schema version {len(MIGRATIONS) + 1}.*up to {len(MIGRATIONS)}"):
        Database(path)
    raw = yaml.safe_load((Path(__file__).parents[2] / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["store"]["path"] = str(path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert cli.main(["audit", "verify", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Store error: ") and "newer Precinct" in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_racing_claims_from_two_connections_at_once_have_one_winner_each(tmp_path: Path):
    """Inside one bridge, claims come through the inbound pump one at a time, so they never run at the same
    moment there; what makes 'one winner' true is the store's single conditional UPDATE. Race it for real:
    two threads, each with its own connection (as the bridge and a command-line process would be), claiming
    the same 200 chats at the same instant."""
    import threading

    path = tmp_path / "precinct.db"
    setup = Store.open(path)
    ids = [setup.chats.create(f"c{i}", f"h{i}", "general", "central", None, None).id for i in range(200)]
    setup.close()
    stores = [Store.open(path), Store.open(path)]
    start = threading.Barrier(2)
    won: dict[str, list[str]] = {"@a:p": [], "@b:p": []}

    def claim_all(store: Store, officer: str) -> None:
        start.wait()
        for chat_id in ids:
            with store.db.transaction():
                if store.chats.claim(chat_id, officer):
                    won[officer].append(chat_id)

    threads = [threading.Thread(target=claim_all, args=(s, o)) for s, o in zip(stores, won)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not any(t.is_alive() for t in threads)
        assert sorted(won["@a:p"] + won["@b:p"]) == sorted(ids), "every chat claimed exactly once"
        holders = {c: stores[0].chats.get(c).claimed_by for c in ids}
        assert all(holders[c] == "@a:p" for c in won["@a:p"]) and all(holders[c] == "@b:p" for c in won["@b:p"])
    finally:
        for s in stores:
            s.close()


def test_room_keys_a_client_created_outlive_the_process_newest_twenty_per_room(tmp_path):
    """What lets an officer who joins after a restart read the messages sent before it (store/puppets.py)."""
    from bridge.store.puppets import KEYS_KEPT

    def key(n: int) -> dict:
        return {"algorithm": "m.megolm.v1.aes-sha2", "room_id": "!r:l", "session_id": f"s{n}", "session_key": f"k{n}"}
    store = Store.open(tmp_path / "precinct.db")
    for n in range(KEYS_KEPT + 3):
        store.puppets.remember_room_key("@p:l", "!r:l", key(n))
    store.puppets.remember_room_key("@p:l", "!r:l", key(KEYS_KEPT + 2))        # again: no second row
    store.puppets.remember_room_key("@q:l", "!r:l", key(99))
    store.close()
    store = Store.open(tmp_path / "precinct.db")
    assert [k["session_id"] for k in store.puppets.room_keys("@p:l", "!r:l")] == [f"s{n}" for n in range(3, KEYS_KEPT + 3)]
    assert store.puppets.room_keys("@p:l", "!r:l")[-1] == key(KEYS_KEPT + 2)
    store.puppets.forget_room_keys("@p:l")
    assert store.puppets.room_keys("@p:l", "!r:l") == [] and len(store.puppets.room_keys("@q:l", "!r:l")) == 1
    assert store.puppets.forget_room_keys_before(2**62) == 1 and store.puppets.room_keys("@q:l", "!r:l") == []


# ---- lookups that must not grow with history ---------------------------------------------------------

def _steps(store: Store, lookup) -> int:
    """SQLite virtual-machine steps a lookup takes: rows read show here, whatever the machine's speed."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.db.db.conn.set_progress_handler(count, 1)
    try:
        lookup()
    finally:
        store.db.db.conn.set_progress_handler(None, 1)
    return steps


def _history(store: Store, start: int, n: int) -> None:
    """``n`` more finished chats, each with its dispatch notice, an offline message and 5 handled transactions."""
    for i in range(start, start + n):
        new_chat(store, i)
        store.chats.mark(f"chat-{i}", dispatch_event_id=f"$notice-{i}")
        store.tickets.set_event(store.tickets.add("central", "general", "m", None, None).number, f"$ticket-{i}")
        for k in range(5):
            store.transactions.store(f"t{i}.{k}", {"events": [], "n": k})
            key = next(t for t, _ in store.transactions.unprocessed() if t.startswith(f"t{i}.{k}#"))
            store.transactions.mark_processed(key)


def test_finding_waiting_transactions_and_notice_reactions_costs_the_same_after_months_of_chats(store: Store):
    """The inbound pump asks for waiting transactions after every one it handles (about 50 a chat), and a
    reaction on a notice looks up its chat or offline message: a scan of everything ever stored made each
    of these cost more every month the bridge ran."""
    def lookups() -> dict[str, int]:
        return {"waiting transactions": _steps(store, store.transactions.unprocessed),
                "how many wait": _steps(store, store.transactions.count_unprocessed),
                "chat of a notice": _steps(store, lambda: store.chats.by_dispatch_event("$notice-3")),
                "ticket of a notice": _steps(store, lambda: store.tickets.by_event("$ticket-3"))}

    _history(store, 0, 20)
    store.transactions.store("waiting", {"events": []})
    few = lookups()
    _history(store, 20, 400)
    many = lookups()
    assert many == few, f"steps after 20 chats {few}, after 420 {many}"
    assert store.chats.by_dispatch_event("$notice-3").id == "chat-3"
    assert store.tickets.by_event("$ticket-3").event_id == "$ticket-3"
    assert [t.split("#")[0] for t, _ in store.transactions.unprocessed()] == ["waiting"]
