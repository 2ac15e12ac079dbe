"""The dispatch room's texts, the bot's command registry, and the store's atomic claims (no homeserver)."""
from __future__ import annotations

import json

from bridge.officers import dispatch_text
from bridge.officers.bot_commands import BotCommands, BotContext
from bridge.officers.commands import Spec
from bridge.store import Store
from bridge.store.chats import CLOSED
from tests.support.configs import example_config


class Recorder:
    def __init__(self) -> None:
        self.audits: list[tuple] = []

    def chat_event(self, chat_id, kind, actor, **details) -> None:  # type: ignore[no-untyped-def]
        pass

    def audit(self, action, actor, outcome="ok", *, target=None, origin=None, **details) -> None:  # type: ignore[no-untyped-def]
        self.audits.append((action, actor, outcome))


def test_only_one_of_two_claims_wins_and_closed_chats_cannot_be_claimed(tmp_path):
    store = Store.open(tmp_path / "p.db")
    chat = store.chats.create("c1", "h1", "general", "central", None, "en")
    assert [c.id for c in store.chats.waiting("central")] == ["c1"]
    assert store.chats.claim("c1", "@a:x") is True
    assert store.chats.claim("c1", "@b:x") is False
    assert store.chats.get("c1").claimed_by == "@a:x" and store.chats.waiting("central") == []
    assert store.chats.held_by("@a:x") == 1
    assert store.chats.unclaim("c1", "@b:x") is False and store.chats.unclaim("c1", "@a:x") is True
    store.chats.set_state(chat.id, CLOSED)
    assert store.chats.claim("c1", "@b:x") is False


def test_high_priority_goes_first_then_first_come(tmp_path):
    store = Store.open(tmp_path / "p.db")
    for n in ("a", "b", "c"):
        store.chats.create(n, "h" + n, "general", "central", None, None)
    store.chats.mark("c", priority=1, emergency=1)
    assert [c.id for c in store.chats.waiting("central")] == ["c", "a", "b"]


def test_officers_get_numbers_per_agency_and_tickets_are_taken_once(tmp_path):
    store = Store.open(tmp_path / "p.db")
    assert store.officers.get("central", "@a:x").number == 1
    assert store.officers.get("central", "@b:x").number == 2
    assert store.officers.get("central", "@a:x").number == 1
    assert store.officers.get("north", "@b:x").number == 1
    ticket = store.tickets.add("central", "general", "My shed", None, "me@example.org")
    assert store.tickets.claim(ticket.number, "@a:x") and not store.tickets.claim(ticket.number, "@b:x")


def test_chat_notice_shows_what_officers_need(tmp_path):
    store = Store.open(tmp_path / "p.db")
    chat = store.chats.create("c1", "h1", "general", "central", None, "fr")
    store.chats.mark("c1", preview="J'ai perdu mon sac", tags=json.dumps(["theft"]))
    chat = store.chats.get("c1")
    text = dispatch_text.chat_notice(chat, "General enquiry", chat.created_ts + 75_000, "!")
    assert text.startswith(f"Chat {chat.number} · General enquiry · language fr")
    assert "(1m 15s so far)" in text and f"!claim {chat.number}" in text and "“J'ai perdu mon sac”" in text
    assert "Tags: theft" in text
    store.chats.claim("c1", "@a:x")
    store.chats.mark("c1", emergency=1, priority=1)
    claimed = dispatch_text.chat_notice(store.chats.get("c1"), "General enquiry", chat.created_ts, "!")
    assert claimed.startswith("🚨 EMERGENCY") and "Claimed by @a:x" in claimed and "!claim" not in claimed


def test_mentions_become_pills_and_text_is_escaped():
    html = dispatch_text.as_html("<b>Chat 1</b>\n@s:x", ["@s:x"])
    assert html == '&lt;b&gt;Chat 1&lt;/b&gt;<br><a href="https://matrix.to/#/@s:x">@s:x</a>'


async def test_bot_commands_register_dispatch_and_refuse_strangers(tmp_path):
    config = example_config(tmp_path)
    journal = Recorder()
    commands = BotCommands(config, journal, "!")
    seen: list[tuple[str, str]] = []

    async def hold(ctx: BotContext, cmd) -> None:  # type: ignore[no-untyped-def]
        seen.append((ctx.sender, cmd.arg))
    commands.register(Spec("hold", "hold <number>", "keep a chat", arg="required"), hold)
    replies: list[str] = []

    async def reply(text: str) -> None:
        replies.append(text)
    central = config.agency("central")
    officer = BotContext("!d:x", "@officer1:police.example", central, reply)
    stranger = BotContext("!d:x", "@someone:elsewhere.example", central, reply)
    await commands.handle(officer, "!hold 1001")
    assert seen == [("@officer1:police.example", "1001")]
    await commands.handle(stranger, "!hold 1001")
    assert len(seen) == 1 and "refused" in replies[-1]
    assert journal.audits[-1] == ("bot.hold", "@someone:elsewhere.example", "refused")
    await commands.handle(officer, "!hold")
    assert "Usage: !hold <number>" in replies[-1]
    await commands.handle(stranger, "!help")                    # help is for anyone
    assert "!hold <number>" in replies[-1] and "!help" in replies[-1]
    direct = BotContext("!dm:x", "@officer1:police.example", None, reply)
    assert [a.id for a in direct.agencies(config)] == ["central"]


def test_a_transferred_chat_notice_says_where_it_went(tmp_path):
    store = Store.open(tmp_path / "p.db")
    chat = store.chats.create("c1", "h1", "general", "central", None, None)
    text = dispatch_text.transferred_notice(chat, "General enquiry", "County Police", "@a:x")
    assert text.startswith(f"Chat {chat.number} · General enquiry") and "Transferred to County Police by @a:x" in text
    store.chats.claim("c1", "@a:x")
    store.chats.set_transfer("c1", "county", "county", "@a:x", "rural noise")
    moved = store.chats.get("c1")
    assert moved.claimed_by is None and moved.agency == "county" and moved.dispatch_event_id is None
    assert "Transferred here by @a:x: rural noise" in dispatch_text.chat_notice(moved, "General enquiry", 0, "!")
    store.chats.set_transfer("c1", "central", "@b:x", "@a:x", None)
    assert store.chats.get("c1").claimed_by == "@b:x"             # sent to one officer: theirs
