"""A real store, records and chat service without Matrix: for unit tests of bridge/records."""
from __future__ import annotations

from pathlib import Path

from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.config import Config
from bridge.records import Records
from bridge.store import Store
from tests.support.configs import example_config


def records_env(tmp_path: Path) -> tuple[Config, Store, Records, ChatService]:
    config = example_config(tmp_path)
    store = Store.open(tmp_path / "p.db")
    records = Records.open(config, store)
    service = ChatService(config, store, None, None, None, ChatHub(), lambda: None, records)  # type: ignore[arg-type]
    service.start_setup = lambda chat_id: None  # type: ignore[method-assign]
    return config, store, records, service
