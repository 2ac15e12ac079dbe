"""System messages keep their notice code and parameters, and the visitor API hands them to the page."""
from __future__ import annotations

from pathlib import Path

from bridge.chats import notices
from bridge.store import Store
from bridge.store.messages import SYSTEM, VISITOR
from bridge.web.visitor_api import message_frame


def test_a_system_message_keeps_code_and_params_and_its_frame_carries_them(tmp_path: Path):
    store = Store.open(tmp_path / "precinct.db")
    try:
        store.chats.create("chat-1", "hash-1", "general", "central", None, None)
        joined = store.messages.add("chat-1", SYSTEM, "text", **notices.message("officer_joined", name="PC Ørsted"))
        mine = store.messages.add("chat-1", VISITOR, "text", "hello", client_id="c1")
        again = store.messages.get("chat-1", joined.seq)
        assert again is not None
        assert (again.code, again.notice_params, again.body) == (
            "officer_joined", {"name": "PC Ørsted"}, "PC Ørsted has joined the chat.")
        frame = message_frame(again)
        assert frame["code"] == "officer_joined" and frame["params"] == {"name": "PC Ørsted"}
        assert frame["body"] == "PC Ørsted has joined the chat."
        assert "code" not in message_frame(mine) and "params" not in message_frame(mine)
    finally:
        store.close()
