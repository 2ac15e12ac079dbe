"""A reload and a lost network in the middle of a chat: nothing lost, nothing shown or sent twice."""
from __future__ import annotations

import uuid

from playwright.async_api import expect

from tests.support.waiting import until

from .conftest import CitizenPage, open_chat


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


async def assert_page_matches_bridge(citizen: CitizenPage) -> list[dict]:
    """The page shows exactly the bridge's stored messages, in seq order, each once, none pending."""
    api = await citizen.api_messages()
    assert not api["more"]
    stored = [(m["seq"], m["from"], m["body"]) for m in api["messages"] if m["kind"] in ("text", "notice")]
    shown = await citizen.rendered()
    assert [(m["seq"], m["from"], m["body"]) for m in shown] == stored
    assert not [m for m in shown if m["unconfirmed"]]
    return shown


async def test_reload_and_offline_lose_and_double_nothing(citizen: CitizenPage, officer, bridge_log):
    page = citizen.page
    first = unique("Someone keeps ringing my doorbell at night")
    got = await open_chat(citizen, officer, first)
    before = unique("Is it happening right now?")
    await officer.send(got.room_id, before)
    await expect(citizen.officer_message(before)).to_have_count(1)

    # Reload mid-chat: the same chat comes back (token in sessionStorage), each message once.
    chat_id = (await citizen.stored_session())["chat_id"]
    await page.reload()
    await expect(page.locator("#chat")).to_be_visible()
    await expect(page.locator("#start")).to_be_hidden()
    assert (await citizen.stored_session())["chat_id"] == chat_id
    await expect(citizen.own(first)).to_have_count(1)
    await expect(citizen.officer_message(before)).to_have_count(1)
    after_reload = unique("Officer writing after the reload")
    await officer.send(got.room_id, after_reload)
    await expect(citizen.officer_message(after_reload)).to_have_count(1)   # the new socket is live
    await assert_page_matches_bridge(citizen)

    # The browser goes offline; the citizen writes anyway, and the officer writes meanwhile.
    await citizen.context.set_offline(True)
    await expect(page.locator("#connection")).to_contain_text("offline")
    offline = unique("Written while offline")
    mine = await citizen.send(offline)
    await expect(mine.locator(".msg__state")).to_contain_text("Not sent yet")
    while_away = unique("Officer writing while the citizen is offline")
    await officer.send(got.room_id, while_away)
    await until(lambda: _stored(citizen, while_away), 60, "the officer's message stored at the bridge")
    await expect(citizen.officer_message(while_away)).to_have_count(0)     # really cut off

    # Back online: the offline message goes once, the missed message arrives once.
    await citizen.context.set_offline(False)
    await expect(mine.locator(".msg__state")).to_have_text("Delivered")
    await expect(citizen.officer_message(while_away)).to_have_count(1)
    await expect(page.locator("#connection")).to_be_hidden()
    await officer.wait_message(lambda m: m.body == offline, 60, "the offline message at the officer")

    # A later message reaches the officer only after anything sent before it (the outbox is in
    # order), so once it is there, a second copy of the offline message would be too.
    sentinel = unique("Last one")
    await expect((await citizen.send(sentinel)).locator(".msg__state")).to_have_text("Delivered")
    await officer.wait_message(lambda m: m.body == sentinel, 60, "the sentinel at the officer")
    assert [m.body for m in officer.messages if m.room_id == got.room_id].count(offline) == 1
    shown = await assert_page_matches_bridge(citizen)
    assert [m["body"] for m in shown].count(offline) == 1

    # And once more from the tab's own copy, after all that.
    await page.reload()
    await expect(citizen.own(sentinel)).to_have_count(1)
    await assert_page_matches_bridge(citizen)


async def _stored(citizen: CitizenPage, body: str) -> bool:
    return any(m["body"] == body for m in (await citizen.api_messages())["messages"])
