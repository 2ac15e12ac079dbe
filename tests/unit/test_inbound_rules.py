"""What officers' events may change on the citizen's side (bridge/chats/inbound.py)."""
from __future__ import annotations

from types import SimpleNamespace

from bridge.chats.inbound import ChatRooms, KeyWait
from bridge.chats.lifecycle import ChatListener
from bridge.store import Store
from bridge.store.messages import OFFICER, VISITOR
from bridge.store.room_events import RoomEvent
from tests.support.configs import example_config


async def read_nothing_back(puppet: str, room_id: str, since_ms: int) -> int:
    return 0                            # these events are not encrypted: no session numbers to follow


def _pump(store: Store, tmp_path):
    published: list[tuple] = []
    chats = SimpleNamespace(bot="@precinct:police.example", listener=ChatListener(),
                            officer_message=lambda chat, kind, body, *a, target_seq=None, **k:
                            published.append((chat.id, kind, target_seq)))
    async def member_name(puppet: str, room_id: str, member: str) -> None:
        return None                     # the puppet sees no names: officers are shown by user ID
    crypto = SimpleNamespace(member_name=member_name)
    pump = ChatRooms(example_config(tmp_path), store, crypto,  # type: ignore[arg-type]
                     SimpleNamespace(is_puppet=lambda u: u.startswith("@webchat_")), chats,  # type: ignore[arg-type]
                     SimpleNamespace(is_command=lambda t: t.startswith("!")),  # type: ignore[arg-type]
                     SimpleNamespace(allowed=lambda u: True, admitted=lambda c, u: True),  # type: ignore[arg-type]
                     KeyWait(store, crypto, 6), read_nothing_back)  # type: ignore[arg-type]
    return pump, published


def _relation(kind: str, event_id: str, room: str, sender: str, target: str) -> dict:
    if kind == "redaction":
        return {"type": "m.room.redaction", "event_id": event_id, "room_id": room, "sender": sender,
                "origin_server_ts": 1, "content": {"redacts": target}}
    return {"type": "m.room.message", "event_id": event_id, "room_id": room, "sender": sender,
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "* changed",
                                               "m.new_content": {"msgtype": "m.text", "body": "changed"},
                                               "m.relates_to": {"rel_type": "m.replace", "event_id": target}}}


async def test_edits_only_by_the_author_and_nothing_across_chats(tmp_path):
    store = Store.open(tmp_path / "p.db")
    for n in ("a", "b"):
        store.chats.create(n, "h" + n, "general", "central", None, None)
        store.chats.set_puppet(n, f"@webchat_{n}:police.example")
        store.chats.set_room(n, f"!{n}:police.example")
    mine = store.messages.add("a", VISITOR, "text", "my words", client_id="c1")
    store.messages.set_event_id("a", mine.seq, "$visitor")
    theirs = store.messages.add("a", OFFICER, "text", "officer A", sender_mxid="@o1:police.example",
                                event_id="$officerA")
    pump, published = _pump(store, tmp_path)
    a, b = store.chats.get("a"), store.chats.get("b")
    refused = [(a, _relation("edit", "$e1", "!a:police.example", "@o1:police.example", "$visitor")),
               (b, _relation("edit", "$e2", "!b:police.example", "@o1:police.example", "$officerA")),
               (b, _relation("redaction", "$e3", "!b:police.example", "@o1:police.example", "$officerA")),
               (a, _relation("edit", "$e4", "!a:police.example", "@o2:police.example", "$officerA"))]
    for i, (chat, event) in enumerate(refused):
        assert await pump.handle_in(chat, RoomEvent(i, event["event_id"], event["room_id"], event, None))
    assert published == [], "edits of someone else's message and changes across chats must be ignored"
    allowed = [_relation("edit", "$e5", "!a:police.example", "@o1:police.example", "$officerA"),
               _relation("redaction", "$e6", "!a:police.example", "@o2:police.example", "$officerA")]
    for i, event in enumerate(allowed):
        await pump.handle_in(a, RoomEvent(10 + i, event["event_id"], event["room_id"], event, None))
    assert published == [("a", "edit", theirs.seq), ("a", "redaction", theirs.seq)]
    store.close()


async def test_the_key_wait_runs_from_receipt_so_events_queued_under_one_missing_key_wait_once(tmp_path):
    """Ten commands sent at once under a room key the bridge never got: a room's events are handled one at a
    time, and a wait counted from each one's first try made the last wait ten times over (a minute before the
    officer heard of it, tests/integration/test_key_delivery.py); counted from receipt, they all end together."""
    import time

    store = Store.open(tmp_path / "p.db")
    async def decrypt(user_id, event):
        return None                                     # the key never comes
    async def request_room_key(user_id, event):
        return False                                    # asked once already (tests/unit/test_room_key_requests.py)
    keys = KeyWait(store, SimpleNamespace(decrypt=decrypt, request_room_key=request_room_key), 6)  # type: ignore[arg-type]
    now = int(time.time() * 1000)
    events = [{"type": "m.room.encrypted", "event_id": f"$c{i}", "room_id": "!d:police.example",
               "sender": "@o1:police.example", "origin_server_ts": i, "content": {}} for i in range(10)]
    for event in events:
        store.room_events.add(event)
    waiting = store.room_events.pending("!d:police.example")
    assert [e.event_id for e in waiting] == [e["event_id"] for e in events]
    # Received, and the bridge started, 7 s ago: the first try of each one comes now, one after the other.
    keys.started_ms = now - 7000
    store.db.execute("UPDATE room_events SET received_ts = ?", [now - 7000])
    waiting = store.room_events.pending("!d:police.example")
    assert [(await keys.decrypt("@precinct:police.example", e)).give_up for e in waiting] == [True] * 10
    # Received just now: still waiting, though tried for the first time.
    store.room_events.add({**events[0], "event_id": "$fresh"})
    fresh = [e for e in store.room_events.pending("!d:police.example") if e.event_id == "$fresh"]
    result = await keys.decrypt("@precinct:police.example", fresh[0])
    assert result.event is None and not result.give_up
    # Received long ago but before this start: a fresh wait from the start (its key may be in a push not yet read).
    keys.started_ms = now
    store.db.execute("UPDATE room_events SET received_ts = ? WHERE event_id = '$fresh'", [now - 60_000])
    fresh = [e for e in store.room_events.pending("!d:police.example") if e.event_id == "$fresh"]
    assert not (await keys.decrypt("@precinct:police.example", fresh[0])).give_up
    store.close()
