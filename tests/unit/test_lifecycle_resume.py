"""Start-up resumes every chat that still owes the officers something (bridge/chats/lifecycle.py)."""
from __future__ import annotations

from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.store import Store
from tests.support.configs import example_config


async def test_a_chat_closed_before_its_room_existed_still_delivers_acked_messages(tmp_path):
    config = example_config(tmp_path)
    store = Store.open(tmp_path / "p.db")
    started: list[str] = []
    service = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    service.start_setup = started.append             # the homeserver is down: set-up never finishes
    chat, _ = service.open(None, None, None)
    quiet, _ = service.open(None, None, None)
    service.visitor_message(chat, "c1", "someone is following me")   # acked to the citizen
    service.close(store.chats.get(chat.id), by="visitor")
    service.close(store.chats.get(quiet.id), by="visitor")           # closed with nothing to send
    restarted = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    restarted.start_setup = started.append
    started.clear()
    await restarted.resume()
    assert started == [chat.id]
    store.close()
