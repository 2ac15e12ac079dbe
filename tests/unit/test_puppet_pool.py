"""The puppet pool's bookkeeping (pure logic; the homeserver calls are recorded by a fake)."""
from __future__ import annotations

import asyncio

from bridge.matrix.puppets import PuppetManager
from bridge.store import Store


class FakeApi:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.identities: dict[str, int] = {}
        self.seen_in_pool_while_preparing: list[str] = []

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


class FakeCrypto:
    async def upload_device_keys(self, user_id: str) -> dict:
        await asyncio.sleep(0.01)
        return {}


async def test_chats_made_while_the_pool_is_empty_are_never_prepared_twice(tmp_path):
    store = Store.open(tmp_path / "db.sqlite")
    api = FakeApi(store)
    manager = PuppetManager(api, FakeCrypto(), store.puppets, "hs.example", "webchat_", pool_size=3)  # type: ignore[arg-type]
    # Several chats at once with an empty pool: each for_chat refills the pool concurrently.
    puppets = await asyncio.gather(*(manager.for_chat(f"chat{i}", "Visitor") for i in range(6)))
    await manager._filling                                  # let the refill finish
    assert len({p.user_id for p in puppets}) == 6
    assert all(store.puppets.for_chat(f"chat{i}").user_id == puppets[i].user_id for i in range(6))
    assert all(count == 1 for count in api.identities.values()), api.identities
    pool = store.puppets.pool()
    assert len(pool) == 3 and all(p.ready for p in pool)
    # Taking from the pool hands each prepared puppet to exactly one chat.
    taken = await asyncio.gather(*(manager.for_chat(f"later{i}", "Visitor") for i in range(3)))
    assert {p.user_id for p in taken} == {p.user_id for p in pool}
    assert all(count == 1 for count in api.identities.values())
    await manager.stop()
    store.close()
