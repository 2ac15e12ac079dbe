"""An officer's message whose Megolm number skips one the bridge never received holds the room while it is read
back (bridge/chats/inbound.py, ChatRooms._in_sequence): the rule, on a real store and real Megolm ciphertexts,
with the homeserver's room reading replaced by a recorder (tests/integration/test_restart.py shows it live)."""
from __future__ import annotations

from types import SimpleNamespace

import vodozemac

from bridge.chats.inbound import ChatRooms, KeyWait
from bridge.chats.lifecycle import ChatListener
from bridge.store import Store
from bridge.store.chats import Chat
from bridge.store.room_events import DONE, RoomEvent
from tests.support.configs import example_config

ROOM = "!a:police.example"


def _encrypted(session: vodozemac.GroupSession, event_id: str) -> dict:
    """The session's next message; written at its number's millisecond (the homeserver's clock orders a room)."""
    written = 1_000 + session.message_index
    message = session.encrypt(b'{"type": "m.room.message"}')
    ciphertext = message.to_base64() if hasattr(message, "to_base64") else str(message)
    return {"type": "m.room.encrypted", "event_id": event_id, "room_id": ROOM, "sender": "@o1:police.example",
            "origin_server_ts": written, "content": {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "k",
                                                  "device_id": "D", "session_id": session.session_id,
                                                  "ciphertext": ciphertext}}


class Rooms:
    """The room as the homeserver has it: what a reading finds and queues (events the bridge never received)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.held: list[dict] = []
        self.readings = 0

    async def read_back(self, puppet: str, room_id: str, since_ms: int) -> int:
        self.readings += 1
        added = [e for e in self.held if self.store.room_events.add(e)]
        self.held = []
        return len(added)


def _chat_rooms(store: Store, tmp_path, rooms: Rooms) -> ChatRooms:
    chats = SimpleNamespace(bot="@precinct:police.example", listener=ChatListener())
    return ChatRooms(example_config(tmp_path), store, SimpleNamespace(),  # type: ignore[arg-type]
                     SimpleNamespace(is_puppet=lambda u: u.startswith("@webchat_")), chats,  # type: ignore[arg-type]
                     SimpleNamespace(), SimpleNamespace(),  # type: ignore[arg-type]
                     KeyWait(store, SimpleNamespace(), 6), rooms.read_back)  # type: ignore[arg-type]


def _received(store: Store, event: dict) -> RoomEvent:
    store.room_events.add(event)
    return next(i for i in store.room_events.pending(ROOM) if i.event_id == event["event_id"])


def _a_chat(tmp_path) -> tuple[Store, Chat, Rooms, ChatRooms]:
    """A store with one chat in ROOM, the room as the homeserver has it, and the chat rooms' handler."""
    store = Store.open(tmp_path / "p.db")
    store.chats.create("a", "ha", "general", "central", None, None)
    store.chats.set_puppet("a", "@webchat_a:police.example")
    store.chats.set_room("a", ROOM)
    rooms = Rooms(store)
    return store, store.chats.get("a"), rooms, _chat_rooms(store, tmp_path, rooms)  # type: ignore[return-value]


async def test_a_skipped_number_is_read_back_and_goes_first_and_a_failed_send_costs_one_reading(tmp_path):
    store, chat, rooms, handler = _a_chat(tmp_path)
    session = vodozemac.GroupSession()
    m0, m1, m2 = (_encrypted(session, f"$m{n}") for n in range(3))

    first = _received(store, m0)
    assert await handler._in_sequence(chat, first) and rooms.readings == 0        # number 0: nothing before it
    store.room_events.finish(first.stream, DONE)
    rooms.held = [m1]                                                                # stranded by the homeserver
    later = _received(store, m2)
    assert not await handler._in_sequence(chat, later)                              # held: m1 was read back
    assert rooms.readings == 1 and store.room_events.known("$m1")
    assert [i.event_id for i in store.room_events.pending(ROOM)] == ["$m1", "$m2"]  # written order: m1 first
    skipped = next(i for i in store.room_events.pending(ROOM) if i.event_id == "$m1")
    assert await handler._in_sequence(chat, skipped)
    store.room_events.finish(skipped.stream, DONE)
    assert await handler._in_sequence(chat, later) and rooms.readings == 1          # no gap left: no reading
    store.room_events.finish(later.stream, DONE)

    session.encrypt(b"a send that failed: its number is never used")            # number 3
    after_failure = _received(store, _encrypted(session, "$m4"))
    assert await handler._in_sequence(chat, after_failure) and rooms.readings == 2  # read once, nothing found
    store.room_events.finish(after_failure.stream, DONE)

    # After a restart the numbers come from the store: the next message in order needs no reading.
    restarted = _chat_rooms(store, tmp_path, rooms)
    assert await restarted._in_sequence(chat, _received(store, _encrypted(session, "$m5")))
    assert rooms.readings == 2
    store.close()


async def test_a_new_room_key_is_checked_for_what_the_old_one_left_behind(tmp_path):
    """A sender's client starts a new room key (someone left, or 100 messages in Element): its first message is
    number 0 again, so no number is skipped, yet the last messages under the old key may be what the push went
    past. The room is read back once for it; the first key of a sender costs no reading."""
    store, chat, rooms, handler = _a_chat(tmp_path)
    old, new = vodozemac.GroupSession(), vodozemac.GroupSession()
    a0, a1 = _encrypted(old, "$a0"), _encrypted(old, "$a1")
    b0 = {**_encrypted(new, "$b0"), "origin_server_ts": 1_010}          # written after a1

    first = _received(store, a0)
    assert await handler._in_sequence(chat, first) and rooms.readings == 0     # the sender's first key: no reading
    store.room_events.finish(first.stream, DONE)
    rooms.held = [a1]                                                           # stranded by the homeserver
    later = _received(store, b0)
    assert not await handler._in_sequence(chat, later)                         # held: a1 was read back
    assert rooms.readings == 1 and [i.event_id for i in store.room_events.pending(ROOM)] == ["$a1", "$b0"]
    skipped = next(i for i in store.room_events.pending(ROOM) if i.event_id == "$a1")
    assert await handler._in_sequence(chat, skipped)
    store.room_events.finish(skipped.stream, DONE)
    assert await handler._in_sequence(chat, later) and rooms.readings == 1     # read once, not again
    store.room_events.finish(later.stream, DONE)

    # A third key with nothing left behind: one reading finds nothing, and the message goes at once.
    third_key = vodozemac.GroupSession()
    third = _received(store, {**_encrypted(third_key, "$c0"), "origin_server_ts": 1_020})
    assert await handler._in_sequence(chat, third) and rooms.readings == 2
    store.room_events.finish(third.stream, DONE)
    # Another sender's first key is that sender's first: no reading.
    other = {**_encrypted(vodozemac.GroupSession(), "$o0"), "sender": "@o2:police.example", "origin_server_ts": 1_030}
    assert await handler._in_sequence(chat, _received(store, other)) and rooms.readings == 2
    # After a restart the senders' keys come from the store: the next message under the third key needs none.
    restarted = _chat_rooms(store, tmp_path, rooms)
    assert await restarted._in_sequence(chat, _received(store, {**_encrypted(third_key, "$c1"),
                                                                 "origin_server_ts": 1_040}))
    assert rooms.readings == 2
    store.close()
