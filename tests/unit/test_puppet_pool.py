"""The puppet pool's bookkeeping (pure logic; the homeserver calls are recorded by a fake)."""
from __future__ import annotations

import asyncio

from bridge.matrix.puppets import PuppetManager
from bridge.matrix.rooms import RoomPolicy
from bridge.store import Store

ACL = {"allow": ["hs.example"], "deny": [], "allow_ip_literals": False}


class FakeApi:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.identities: dict[str, int] = {}
        self.rooms: dict[str, str] = {}
        self.seen_in_pool_while_preparing: list[str] = []
        self.looked_for_rooms: list[str] = []         # joined_rooms asked, per user
        self.acl_reads: list[str] = []                # rooms whose m.room.server_acl was read
        self.acl: dict[str, dict] = {}                # room → its server ACL

    async def register(self, localpart: str) -> None:
        await asyncio.sleep(0.01)

    async def create_device(self, user_id: str, device_id: str, name: str) -> None:
        await asyncio.sleep(0.01)

    async def upload_cross_signing(self, user_id: str, body: dict) -> None:
        self.identities[user_id] = self.identities.get(user_id, 0) + 1
        await asyncio.sleep(0.01)

    async def query_device_keys(self, user_id: str, device_id: str) -> dict:
        return {"user_id": user_id, "device_id": device_id, "algorithms": [], "keys": {}}

    async def upload_signatures(self, user_id: str, body: dict) -> None:
        await asyncio.sleep(0.01)

    async def set_display_name(self, user_id: str, name: str) -> None:
        pass

    async def joined_rooms(self, user_id: str) -> list[str]:
        self.looked_for_rooms.append(user_id)
        return [room for room, creator in self.rooms.items() if creator == user_id]

    async def send(self, req, **kw) -> dict:     # HomeserverApi.send: a cs_api.Request, sent
        return await self.request(req.method, req.path, req.body, **kw)

    async def request(self, method: str, path: str, body=None, *, user_id=None, **kw) -> dict:
        assert user_id
        if "/state/m.room.server_acl" in path:
            room_id = path.split("/rooms/")[1].split("/")[0].replace("%21", "!").replace("%3A", ":")
            if method == "GET":
                self.acl_reads.append(room_id)
                return self.acl.get(room_id, {})
            self.acl[room_id] = body
            return {}
        assert path.endswith("/createRoom")
        await asyncio.sleep(0.01)
        room_id = f"!room{len(self.rooms)}:hs.example"
        self.rooms[room_id] = user_id
        self.acl[room_id] = next((e["content"] for e in body.get("initial_state", [])
                                  if e["type"] == "m.room.server_acl"), {})
        return {"room_id": room_id}


class FakeCrypto:
    async def upload_device_keys(self, user_id: str) -> dict:
        await asyncio.sleep(0.01)
        return {}


async def test_chats_made_while_the_pool_is_empty_are_never_prepared_twice(tmp_path):
    store = Store.open(tmp_path / "db.sqlite")
    api = FakeApi(store)
    manager = PuppetManager(api, FakeCrypto(), store.puppets, "hs.example", "webchat_", pool_size=3)  # type: ignore[arg-type]
    # Several chats at once with an empty pool, while the pool refills (as chat set-ups trigger it).
    manager.refill_pool()
    puppets = await asyncio.gather(*(manager.for_chat(f"chat{i}") for i in range(6)))
    await manager._filling                                  # let the refill finish
    assert len({p.user_id for p in puppets}) == 6
    assert all(store.puppets.for_chat(f"chat{i}").user_id == puppets[i].user_id for i in range(6))
    assert all(count == 1 for count in api.identities.values()), api.identities
    pool = store.puppets.pool()
    assert len(pool) == 3 and all(p.ready and p.room_id for p in pool)
    # Pool puppets come with a room of their own; puppets made for a chat on demand do not.
    assert {api.rooms[p.room_id] for p in pool} == {p.user_id for p in pool}
    assert not any(p.room_id for p in puppets if p.user_id not in {q.user_id for q in pool})
    # Taking from the pool hands each prepared puppet (and its room) to exactly one chat.
    taken = await asyncio.gather(*(manager.for_chat(f"later{i}") for i in range(3)))
    assert {p.user_id for p in taken} == {p.user_id for p in pool}
    assert {p.room_id for p in taken} == {p.room_id for p in pool}
    assert all(count == 1 for count in api.identities.values())
    await manager.stop()
    store.close()


async def test_a_pool_puppet_left_without_its_room_gets_one_at_the_next_fill(tmp_path):
    """Stopped while a pool puppet's room was being made (its keys were done): the next fill makes the room,
    so the puppet is handed out again instead of holding a place in the pool for good."""
    store = Store.open(tmp_path / "db.sqlite")
    api = FakeApi(store)
    store.puppets.add("@webchat_left:hs.example", "DEVLEFT")
    for step in ("registered", "device_created", "cross_signed"):
        store.puppets.mark("@webchat_left:hs.example", step)
    manager = PuppetManager(api, FakeCrypto(), store.puppets, "hs.example", "webchat_", pool_size=2)  # type: ignore[arg-type]
    manager.refill_pool()
    await manager._filling
    pool = store.puppets.pool()
    assert len(pool) == 2 and all(p.ready and p.room_id for p in pool)
    assert "@webchat_left:hs.example" in {p.user_id for p in pool}
    assert api.identities.get("@webchat_left:hs.example") is None     # its cross-signing is not made again
    taken = await manager.for_chat("chat")
    assert taken.room_id
    await manager.stop()
    store.close()


async def test_a_new_pool_puppet_makes_its_room_without_looking_for_one_and_its_acl_is_not_read_back(tmp_path):
    """Each is a homeserver request per chat: an account registered in the same preparation has made no room,
    and a room made with today's allowlist needs no check on the next pass. A puppet an earlier run left
    registered but roomless may have made its room before the stop: that one is looked for, and its ACL checked."""
    store = Store.open(tmp_path / "db.sqlite")
    api = FakeApi(store)
    store.puppets.add("@webchat_left:hs.example", "DEVLEFT")
    for step in ("registered", "device_created", "cross_signed"):
        store.puppets.mark("@webchat_left:hs.example", step)
    api.rooms["!earlier:hs.example"] = "@webchat_left:hs.example"        # made before the stop, ID not stored
    manager = PuppetManager(api, FakeCrypto(), store.puppets, "hs.example", "webchat_", pool_size=3,  # type: ignore[arg-type]
                            policy=RoomPolicy(acl=ACL))
    manager.refill_pool()
    await manager._filling
    pool = store.puppets.pool()
    assert len(pool) == 3 and all(p.ready and p.room_id for p in pool)
    assert api.looked_for_rooms == ["@webchat_left:hs.example"]
    assert store.puppets.get("@webchat_left:hs.example").room_id == "!earlier:hs.example"
    manager.refill_pool()                                              # the next pass, as after a chat
    await manager._filling
    assert api.acl_reads == ["!earlier:hs.example"]                    # only the room found, not those made
    assert api.acl["!earlier:hs.example"] == ACL
    assert all(api.acl[p.room_id] == ACL for p in store.puppets.pool())
    taken = await manager.for_chat("chat")                              # a chat takes one; the pool refills
    manager.refill_pool()
    await manager._filling
    assert api.looked_for_rooms == ["@webchat_left:hs.example"] and len(store.puppets.pool()) == 3
    assert taken.room_id and len(api.acl_reads) == 1
    await manager.stop()
    store.close()
