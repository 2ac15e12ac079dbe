"""What officers' events may change on the citizen's side (bridge/chats/inbound.py)."""
from __future__ import annotations

from types import SimpleNamespace

from bridge.chats.inbound import ChatRooms, KeyWait
from bridge.chats.lifecycle import ChatListener
from bridge.store import Store
from bridge.store.messages import OFFICER, VISITOR
from bridge.store.room_events import RoomEvent
from tests.support.configs import example_config


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
                     KeyWait(store, crypto, 6))  # type: ignore[arg-type]
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
