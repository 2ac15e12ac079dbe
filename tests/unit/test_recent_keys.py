"""A new officer device reads the queue: which keys a device seen after a send is owed (bridge/matrix/recent_keys.py),
the note that keeps Synapse from skipping the bot's to-device messages, and the bot's rooms followed after a restart."""
from __future__ import annotations

from bridge.matrix.recent_keys import RecentKeys

BOT, ROOM, OTHER_ROOM = "@bot:hs", "!dispatch:hs", "!direct:hs"
DESK, LAPTOP = ("@officer:hs", "DESK"), ("@officer:hs", "LAPTOP")
STRANGER = ("@stranger:hs", "PHONE")


def test_a_new_device_of_a_holder_gets_the_key_at_the_first_message_in_the_window():
    keys = RecentKeys(window=300)
    keys.sent(BOT, ROOM, "S1", "key-at-0", [DESK], now=100)
    keys.sent(BOT, ROOM, "S1", "key-at-1", [DESK], now=500)
    keys.sent(BOT, ROOM, "S1", "key-at-2", [DESK], now=600)
    [due] = keys.due(BOT, [LAPTOP], now=700)
    # index 0 was sent 600 s before the device was seen: outside the window, so not readable there
    assert due.content == {"algorithm": "m.megolm.v1.aes-sha2", "room_id": ROOM, "session_id": "S1",
                           "session_key": "key-at-1"}
    assert due.devices == {LAPTOP}


def test_nothing_for_users_who_did_not_hold_the_session_or_may_not_hold_keys():
    keys = RecentKeys(window=300)
    keys.sent(BOT, ROOM, "S1", "k", [DESK], now=0)
    assert keys.due(BOT, [STRANGER], now=1) == []                   # not a member when it was sent
    assert keys.due(BOT, [LAPTOP], now=1, may_hold=lambda user: False) == []
    assert keys.due("@someone-else:hs", [LAPTOP], now=1) == []       # another client's sessions


def test_a_member_whose_only_device_is_new_gets_the_key_a_non_member_does_not():
    """A member with no device we knew of when the message was sent (all signed out, then a new sign-in the
    bot had not yet heard of) was entitled to it all the same; a user who joined only later was not."""
    keys = RecentKeys(window=300)
    keys.sent(BOT, ROOM, "S1", "k", [DESK], now=0, members=["@officer:hs", "@sergeant:hs"])
    sergeant_phone = ("@sergeant:hs", "PHONE")
    [due] = keys.due(BOT, [sergeant_phone, STRANGER], now=1)
    assert due.devices == {sergeant_phone} and due.content["session_key"] == "k"
    assert keys.due(BOT, [sergeant_phone], now=1, may_hold=lambda user: False) == []


def test_a_device_that_already_holds_it_or_was_given_it_gets_nothing_more():
    keys = RecentKeys(window=300)
    keys.sent(BOT, ROOM, "S1", "k", [DESK, LAPTOP], now=0)
    assert keys.due(BOT, [LAPTOP], now=1) == []
    keys.sent(BOT, OTHER_ROOM, "S2", "k2", [DESK], now=0)
    [due] = keys.due(BOT, [LAPTOP], now=1)
    keys.given(due)
    assert keys.due(BOT, [LAPTOP], now=2) == []


def test_given_to_part_of_the_devices_leaves_the_rest_owed():
    keys = RecentKeys(window=300)
    tablet = ("@officer:hs", "TABLET")
    keys.sent(BOT, ROOM, "S1", "k", [DESK], now=0)
    [due] = keys.due(BOT, [LAPTOP, tablet], now=1)
    keys.given(due, [LAPTOP])
    [again] = keys.due(BOT, [LAPTOP, tablet], now=2)
    assert again.devices == {tablet}


def test_every_session_and_room_in_the_window_is_owed_and_old_ones_are_forgotten():
    keys = RecentKeys(window=60)
    keys.sent(BOT, ROOM, "OLD", "k-old", [DESK], now=0)
    keys.sent(BOT, ROOM, "S1", "k1", [DESK], now=100)
    keys.sent(BOT, ROOM, "S2", "k2", [DESK], now=110)       # rotated in between
    keys.sent(BOT, OTHER_ROOM, "S3", "k3", [DESK], now=120)
    owed = keys.due(BOT, [LAPTOP], now=130)
    assert sorted((d.room_id, d.session_id) for d in owed) == [(OTHER_ROOM, "S3"), (ROOM, "S1"), (ROOM, "S2")]
    keys.sweep(now=1000)
    assert len(keys) == 0 and keys.due(BOT, [LAPTOP], now=1000) == []


def test_memory_is_bounded_per_room_and_freed_on_forget():
    keys = RecentKeys(window=300, max_per_room=3)
    for i in range(10):
        keys.sent(BOT, ROOM, f"S{i // 4}", f"k{i}", [DESK], now=i)
    assert len(keys) == 3
    assert [d.content["session_key"] for d in keys.due(BOT, [LAPTOP], now=10)] == ["k7", "k8"]
    keys.forget(BOT)
    assert len(keys) == 0


def test_window_zero_remembers_nothing():
    keys = RecentKeys(window=0)
    keys.sent(BOT, ROOM, "S1", "k", [DESK], now=0)
    assert len(keys) == 0 and keys.due(BOT, [LAPTOP], now=0) == []


class RecordingApi:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, dict]] = []

    async def send(self, req, **kw) -> dict:     # HomeserverApi.send: a cs_api.Request, sent
        return await self.request(req.method, req.path, req.body, **kw)

    async def request(self, method: str, path: str, body=None, **kw) -> dict:
        self.requests.append((method, path, body, kw))
        return {}


async def test_room_keys_sent_by_the_bridge_also_note_the_bot_so_synapse_pushes_what_it_holds_for_it(tmp_path):
    """Synapse 1.163 can skip a to-device message in the appservice push when two requests are handled out
    of order; the bot cannot fetch its inbox, so every request of room keys we send also names the bot."""
    from types import SimpleNamespace

    from bridge.matrix.crypto import FLUSH_NOTE, Crypto
    from bridge.store import Store
    store = Store.open(tmp_path / "db.sqlite")
    store.puppets.add("@precinct:hs", "BOTDEVICE", "(bot)")
    api = RecordingApi()
    crypto = Crypto(api, "http://127.0.0.1:1", tmp_path, "k" * 32, store.puppets,  # type: ignore[arg-type]
                    blind_inbox_user="@precinct:hs")
    puppet = SimpleNamespace(user_id="@webchat_a:hs", device_id="PUPPETDEV")
    await crypto._send_room_keys(puppet, {"@officer:hs": {"LAPTOP": {"ciphertext": "…"}}}, "S1", "test")  # type: ignore[arg-type]
    [(method, path, body, kw)] = api.requests
    assert method == "PUT" and "/sendToDevice/m.room.encrypted/" in path
    assert body["messages"] == {"@officer:hs": {"LAPTOP": {"ciphertext": "…"}},
                                "@precinct:hs": {"BOTDEVICE": {FLUSH_NOTE: True}}}
    assert kw["user_id"] == "@webchat_a:hs" and kw["device_id"] == "PUPPETDEV"

    # The note never reaches nio when the push brings it back.
    received: list = []

    async def receive(user_id: str, sync: dict) -> None:
        received.append((user_id, sync))
    crypto._receive = receive  # type: ignore[method-assign]
    await crypto.feed_transaction({"de.sorunome.msc2409.to_device": [
        {"type": "m.room.encrypted", "sender": "@webchat_a:hs", "to_user_id": "@precinct:hs",
         "to_device_id": "BOTDEVICE", "content": {FLUSH_NOTE: True}}]}, lambda user: True)
    assert received == []


async def test_the_bots_direct_rooms_are_shown_to_its_crypto_again_at_start_up(tmp_path):
    """nio forgets rooms across restarts; device changes are followed only for members of rooms it knows."""
    from bridge.officers.bot_rooms import DIRECT, BotRooms
    from bridge.store import Store
    from tests.support.configs import example_config

    class Restoring:
        def __init__(self) -> None:
            self.restored: list[tuple[str, str]] = []

        async def restore_room(self, user_id: str, room_id: str) -> None:
            if room_id == "!gone:hs":
                raise RuntimeError("403: not in room")
            self.restored.append((user_id, room_id))

    store = Store.open(tmp_path / "db.sqlite")
    store.settings.set(DIRECT + "!a:hs", "@officer:hs")
    store.settings.set(DIRECT + "!gone:hs", "@officer:hs")
    store.settings.set("dispatch_room.central", "!dispatch:hs")        # restored by Dispatch itself
    crypto = Restoring()
    rooms = BotRooms(example_config(tmp_path), store, None, crypto, None, None, None, "@precinct:hs",  # type: ignore[arg-type]
                     keys=None)  # type: ignore[arg-type]
    await rooms.restore()
    assert crypto.restored == [("@precinct:hs", "!a:hs")]


async def test_a_puppets_key_counts_are_its_own_devices_not_its_cross_signing_keys(tmp_path):
    """Synapse's MSC3202 counts list a user's cross-signing keys beside its devices, with no counts. The bridge
    took whichever entry came last, so nio never saw a puppet's keys go down and never made new ones while the
    bridge ran (an officer's new device took one: 49 of 50 for as long as the test watched)."""
    from bridge.matrix.crypto import OTK_COUNTS, Crypto
    from bridge.store import Store
    store = Store.open(tmp_path / "db.sqlite")
    store.puppets.add("@webchat_a:hs", "PUPPETDEV", "chat-1")
    crypto = Crypto(RecordingApi(), "http://127.0.0.1:1", tmp_path, "k" * 32, store.puppets)  # type: ignore[arg-type]
    received: list = []

    async def receive(user_id: str, sync: dict) -> None:
        received.append((user_id, sync))
    crypto._receive = receive  # type: ignore[method-assign]
    await crypto.feed_transaction({
        "de.sorunome.msc2409.to_device": [{"type": "m.room.encrypted", "sender": "@officer:hs",
                                           "to_user_id": "@webchat_a:hs", "to_device_id": "PUPPETDEV",
                                           "content": {"ciphertext": "…"}}],
        OTK_COUNTS: {"@webchat_a:hs": {"PUPPETDEV": {"signed_curve25519": 49},
                                       "iyfEiTtGmOY3Ofk3kDVnpC1wuLVOICSn1/IZZVTm1ys": {},
                                       "p2H7xpGGWvmcD6G58I0mog+TlhfcTZipeyMi1vYmjGM": {}}}}, lambda user: True)
    [(user_id, sync)] = received
    assert user_id == "@webchat_a:hs" and sync["device_one_time_keys_count"] == {"signed_curve25519": 49}
