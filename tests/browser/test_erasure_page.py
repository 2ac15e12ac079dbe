"""The citizen erases a finished chat from the page: the bridge forgets what they wrote, and so
does the tab."""
from __future__ import annotations

import uuid

import aiohttp
from playwright.async_api import expect

from tests.conftest import MatrixEnv

from .conftest import CitizenPage, open_chat


async def test_citizen_erases_a_finished_chat(citizen: CitizenPage, officer, matrix_env: MatrixEnv, bridge_log):
    page = citizen.page
    secret = f"My address is 12 Elm Road {uuid.uuid4().hex[:6]}"
    await open_chat(citizen, officer, secret, name="Alex")
    stored = await citizen.stored_session()

    # Not while the chat is open: the button lives on the ended screen.
    await expect(page.locator("#erase-button")).to_be_hidden()
    await page.locator("#end-button").click()
    await page.get_by_role("button", name="Yes, end the chat").click()
    await expect(page.locator("#ended")).to_be_visible()
    await page.locator("#erase-button").click()
    await expect(page.locator("#erase-question")).to_be_focused()
    await page.keyboard.press("Escape")                       # changed my mind
    await expect(page.locator("#erase-confirm")).to_be_hidden()
    await expect(page.locator("#erase-button")).to_be_focused()
    await page.locator("#erase-button").click()
    await citizen.axe("asking to erase")
    await page.get_by_role("button", name="Yes, erase them").click()
    done = page.locator("#erase-result")
    await expect(done).to_have_text("Your messages, your name and your files in this chat have been erased.")
    await expect(done).to_be_focused()

    # Gone from the page and the tab…
    await expect(page.locator("#log > li")).to_have_count(0)
    assert await page.evaluate("() => sessionStorage.getItem('precinct.chat.v1')") is None
    await expect(page.locator("#transcript-link")).to_be_hidden()
    # …and from the bridge: the history answers with the citizen's words blanked.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{matrix_env.public_url}/api/v1/chats/{stored['chat_id']}/messages",
                            headers={"Authorization": f"Bearer {stored['token']}"}) as r:
            assert r.status == 200, await r.text()
            history = await r.json()
    mine = [m for m in history["messages"] if m["from"] == "visitor"]
    assert mine and all(m["body"] == "" for m in mine)
    assert secret not in str(history) and "Alex" not in str(history)
    await citizen.axe("erased")
