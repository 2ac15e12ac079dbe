"""Too many new chats from the citizen's connection: the page says so in the citizen's language, with the
phone and emergency numbers, and starts nothing.

Chromium reaches the bridge from 127.0.0.1. This runs on the bridge with tight limits of its own
(tests/support/limited.py), restarted for this test, so the shared bridge's other tests are not held
back: its chats bucket for 127.0.0.1 is first used up by the API, then the page asks once more."""
from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, expect

from tests.support.limited import PHONE, LimitedEnv

from .conftest import check_and_close, new_citizen

I18N = Path(__file__).parents[2] / "bridge" / "web" / "static" / "i18n"


async def test_a_refused_new_chat_is_explained_in_the_citizens_language(browser: Browser, limited_env: LimitedEnv):
    env = limited_env
    burst = env.limits["chats_per_address"]["burst"]
    async with aiohttp.ClientSession() as http:              # from 127.0.0.1, as Chromium
        for _ in range(burst):
            async with http.post(env.public_url + "/api/v1/chats", json={"topic": "general"}) as r:
                assert r.status == 201, await r.text()
                chat = await r.json()
            async with http.post(f"{env.public_url}/api/v1/chats/{chat['chat_id']}/close", json={},
                                 headers={"Authorization": f"Bearer {chat['token']}"}):
                pass
    chats = env.count("chats")

    for language in ("es", "ar", "en"):
        words = json.loads((I18N / f"{language}.json").read_text(encoding="utf-8"))
        citizen = await new_citizen(browser, env, locale=language)     # type: ignore[arg-type]
        try:
            await citizen.open()
            await citizen.page.locator("#topic").select_option(index=0)
            await citizen.page.locator("#start-button").click()
            expected = words["start.rate_limited_phone"].replace("{number}", "999").replace("{phone}", PHONE)
            await expect(citizen.page.locator("#start-error")).to_have_text(expected)
            await expect(citizen.page.locator("#chat")).to_be_hidden()
            await expect(citizen.page.locator("#start-button")).to_be_enabled()      # free to try again later
            assert await citizen.page.evaluate("() => sessionStorage.getItem('precinct.chat.v1')") is None
        finally:
            await check_and_close(citizen)
    assert env.count("chats") == chats                        # nothing was started
