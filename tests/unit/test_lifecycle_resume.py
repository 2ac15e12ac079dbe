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


async def test_a_silent_chat_is_not_set_up_until_it_speaks_or_is_claimed(tmp_path):
    """Opening a chat costs a row: set-up starts with the first message or a claim, and a restart
    resumes only the chats that need their room."""
    config = example_config(tmp_path)
    store = Store.open(tmp_path / "p.db")
    started: list[str] = []
    service = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    service.start_setup = started.append
    silent, _ = service.open(None, None, None)
    speaking, _ = service.open(None, None, None)
    claimed, _ = service.open(None, None, None)
    assert started == [], "open() makes no puppet and no room"
    service.visitor_message(store.chats.get(speaking.id), "c1", "hello")
    assert started == [speaking.id]
    assert store.chats.claim(claimed.id, "@officer1:police.example")
    restarted = ChatService(config, store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    restarted.start_setup = started.append
    started.clear()
    await restarted.resume()
    assert sorted(started) == sorted([speaking.id, claimed.id])
    assert silent.id not in started
    store.close()
