"""What the bot sends to its rooms, and when (bridge/officers/dispatch.py): the scheduling only; the
encrypted send itself is recorded by a fake (the integration tests send for real)."""
from __future__ import annotations

import asyncio
import time

import pytest

from bridge.officers import dispatch as dispatch_module
from bridge.officers.dispatch import Dispatch
from bridge.store import Store
from bridge.store.chats import Chat
from tests.support.configs import example_config


class RecordingCrypto:
    """Records each send; ``hold`` keeps sends waiting until it is set, as a busy homeserver does."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def send_to_members(self, user_id: str, room_id: str, event_type: str, content: dict, txn_id: str) -> str:
        await self.hold.wait()
        self.sent.append((room_id, content))
        return f"$event{len(self.sent)}"


def text_of(content: dict) -> str:
    return (content.get("m.new_content") or content)["body"]


async def until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def parts(tmp_path):
    yield from _parts(tmp_path)


@pytest.fixture
def one_slot(tmp_path, monkeypatch):
    """As ``parts``, with one send at a time: what is sent next is what the queue's order says."""
    monkeypatch.setattr(dispatch_module, "SENDS_IN_FLIGHT", 1)
    monkeypatch.setattr(dispatch_module, "EDIT_AFTER", 0.05)
    yield from _parts(tmp_path)


def _parts(tmp_path):
    config = example_config(tmp_path)
    store = Store.open(tmp_path / "p.db")
    agency = config.agencies[0]
    store.settings.set(dispatch_module.SETTING + agency.id, "!dispatch:hs.example")
    crypto = RecordingCrypto()
    dispatch = Dispatch(config, store, None, crypto, "@precinct:hs.example")  # type: ignore[arg-type]

    def new_chat() -> Chat:          # after dispatch.start(), which posts the notices a restart owes
        n = len(store.chats.open_chats()) + 1
        return store.chats.create(f"chat-{n}", f"hash-{n}", config.topic(None).id, agency.id, None, None)
    yield store, new_chat, crypto, dispatch
    store.close()


async def test_a_new_chats_notice_is_posted_at_once(parts, monkeypatch):
    store, new_chat, crypto, dispatch = parts
    monkeypatch.setattr(dispatch_module, "EDIT_AFTER", 30.0)
    dispatch.start()
    try:
        chat = new_chat()
        dispatch.chat_changed(chat.id)
        await until(lambda: len(crypto.sent) == 1, 5)          # not held back like an edit
        assert "m.relates_to" not in crypto.sent[0][1]
        assert store.chats.get(chat.id).dispatch_event_id == "$event1"
    finally:
        await dispatch.stop()


async def test_changes_in_a_chats_first_moments_make_one_edit_of_its_notice(parts, monkeypatch):
    """Preview, claim, officer joined, a tag: four changes a few ticks apart, one edit showing the last state.
    (Each edit was sent as it came: a burst of ten chats put thirty edits into the dispatch room while officers
    were claiming.)"""
    store, new_chat, crypto, dispatch = parts
    monkeypatch.setattr(dispatch_module, "EDIT_AFTER", 0.5)
    dispatch.start()
    try:
        chat = new_chat()
        store.chats.mark(chat.id, dispatch_event_id="$notice")
        for preview in ("my bike", "my bike was", "my bike was stolen", "my bike was stolen today"):
            store.chats.mark(chat.id, preview=preview)
            dispatch.chat_changed(chat.id)
            await asyncio.sleep(0.05)                          # each change in a later turn of the loop
        await until(lambda: len(crypto.sent) == 1, 5)
        await asyncio.sleep(dispatch_module.EDIT_AFTER * 2)    # past the moment a second edit would be sent
        assert len(crypto.sent) == 1
        content = crypto.sent[0][1]
        assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$notice"}
        assert "my bike was stolen today" in text_of(content)
        # A change after that edit went out is edited again.
        store.chats.mark(chat.id, priority=1)
        dispatch.chat_changed(chat.id)
        await until(lambda: len(crypto.sent) == 2, 5)
    finally:
        await dispatch.stop()


async def test_answers_are_queued_not_awaited_and_keep_their_order_in_a_room(parts):
    """The room's pump goes on to its next event while the answer to the last is on its way; the answers
    of one room still arrive in the order of the commands."""
    store, _, crypto, dispatch = parts
    crypto.hold.clear()                                        # the homeserver is slow
    dispatch.start()
    try:
        answered = time.monotonic()
        for i in range(5):
            dispatch.answer("!direct:hs.example", f"answer {i}", in_reply_to=f"$command{i}")
        assert time.monotonic() - answered < 0.5 and crypto.sent == []    # nothing waited for a send
        crypto.hold.set()
        await until(lambda: len(crypto.sent) == 5, 5)
        assert [text_of(c) for _, c in crypto.sent] == [f"answer {i}" for i in range(5)]
        assert [c["m.relates_to"]["m.in_reply_to"]["event_id"] for _, c in crypto.sent] == \
            [f"$command{i}" for i in range(5)]
        assert {room for room, _ in crypto.sent} == {"!direct:hs.example"}
    finally:
        await dispatch.stop()


async def test_in_a_burst_new_notices_and_answers_go_before_edits(one_slot):
    """Synapse writes one event at a time in a room: in a burst an edit waits for the notices and answers
    queued in the EDITS_YIELD after it, and then shows every change made meanwhile in one event."""
    store, new_chat, crypto, dispatch = one_slot
    dispatch.start()
    try:
        crypto.hold.clear()                                    # the homeserver is busy with an alert
        dispatch.alert(dispatch.config.agencies[0].id, "busy", mention_supervisors=False)
        posted = new_chat()
        store.chats.mark(posted.id, dispatch_event_id="$notice")
        store.chats.mark(posted.id, preview="my bike")
        dispatch.chat_changed(posted.id)
        await asyncio.sleep(dispatch_module.EDIT_AFTER * 3)    # gathered: the edit is queued now
        fresh = new_chat()
        dispatch.chat_changed(fresh.id)
        dispatch.answer("!direct:hs.example", "answer", in_reply_to="$command")
        store.chats.mark(posted.id, preview="my bike was stolen")   # while the edit waits
        dispatch.chat_changed(posted.id)
        crypto.hold.set()
        await until(lambda: len(crypto.sent) == 4, 5)
        await asyncio.sleep(dispatch_module.EDIT_AFTER * 3)
        texts = [text_of(c) for _, c in crypto.sent]
        assert len(texts) == 4, texts                          # the second change made no edit of its own
        assert texts[0].startswith("busy")
        assert texts[1].startswith(f"Chat {fresh.number} ")    # the new chat's notice
        assert texts[2] == "answer"
        assert crypto.sent[3][1]["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$notice"}
        assert "my bike was stolen" in texts[3]
    finally:
        await dispatch.stop()


async def test_an_edit_is_not_overtaken_by_what_comes_after_its_yield(one_slot, monkeypatch):
    """An edit yields for EDITS_YIELD, not for ever: a steady stream of new chats does not leave the
    notices of claimed chats showing them as waiting."""
    monkeypatch.setattr(dispatch_module, "EDITS_YIELD", 0.2)
    store, new_chat, crypto, dispatch = one_slot
    dispatch.start()
    try:
        crypto.hold.clear()
        dispatch.alert(dispatch.config.agencies[0].id, "busy", mention_supervisors=False)
        posted = new_chat()
        store.chats.mark(posted.id, dispatch_event_id="$notice")
        dispatch.chat_changed(posted.id)
        await asyncio.sleep(dispatch_module.EDIT_AFTER + 0.4)  # the edit queued, its yield over
        fresh = new_chat()
        dispatch.chat_changed(fresh.id)
        crypto.hold.set()
        await until(lambda: len(crypto.sent) == 3, 5)
        assert crypto.sent[1][1]["m.relates_to"]["event_id"] == "$notice"
        assert text_of(crypto.sent[2][1]).startswith(f"Chat {fresh.number} ")
    finally:
        await dispatch.stop()
