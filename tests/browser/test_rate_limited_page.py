"""A message over the chat's rate (rate_limited): the page keeps it, says so in the citizen's language,
sends it again after retry_after, and it arrives once."""
from __future__ import annotations

import uuid

import aiohttp
from playwright.async_api import expect

from .conftest import CitizenPage

BURST = 20          # web.chat_message_burst default


async def test_the_page_sends_a_rate_limited_message_again_and_it_arrives(citizen: CitizenPage, bridge_log):
    page = citizen.page
    await citizen.open()
    await citizen.start("General enquiry")
    session = await citizen.stored_session()
    # Another client of the same chat (the API) uses up the burst, so the page's next message is over it.
    async with aiohttp.ClientSession() as http:
        refused = False
        for i in range(BURST + 1):
            async with http.post(f"{citizen.env.public_url}/api/v1/chats/{session['chat_id']}/messages",
                                 headers={"Authorization": f"Bearer {session['token']}"},
                                 json={"client_id": uuid.uuid4().hex, "body": f"by the API {i}"}) as r:
                if r.status == 429:
                    refused = True
                    break
                assert r.status == 201, await r.text()
        assert refused, "the burst is used up"
    text = f"Typed right after {uuid.uuid4().hex[:6]}"
    mine = await citizen.send(text)
    await expect(page.locator("#chat-error")).to_contain_text("You are sending messages quickly")
    await expect(mine.locator(".msg__state")).to_have_text("Delivered", timeout=60_000)
    stored = [m for m in (await citizen.api_messages())["messages"] if m["body"] == text]
    assert len(stored) == 1
    await expect(page.locator("#chat-error")).to_have_text("")
    await expect(citizen.own(text)).to_have_count(1)
