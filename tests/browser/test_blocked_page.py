"""A citizen whose source an officer blocked sees why a new chat does not start, in their language.

Chromium reaches the bridge from 127.0.0.1, like every browser test: the block is lifted in ``finally``
so later tests start chats as before."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, expect

from tests.conftest import MatrixEnv

from .conftest import CitizenPage, check_and_close, new_citizen, open_chat

I18N = Path(__file__).parents[2] / "bridge" / "web" / "static" / "i18n"


async def test_a_blocked_citizen_is_told_in_their_language_and_unblock_lets_them_in(
        browser: Browser, citizen: CitizenPage, officer, matrix_env: MatrixEnv, bridge_log):
    got = await open_chat(citizen, officer, f"prank {uuid.uuid4().hex[:6]}")
    room, puppet = got.room_id, got.sender
    number = str(matrix_env.config.get("site", {}).get("emergency_number", "999"))
    blocked = False
    try:
        await officer.send(room, "!block prank")
        await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet and "blocked chat" in m.body,
                                   60, "the block's confirmation")
        blocked = True
        await expect(citizen.page.locator("#ended")).to_be_visible()

        for language in ("es", "ar", "en"):
            words = json.loads((I18N / f"{language}.json").read_text(encoding="utf-8"))
            other = await new_citizen(browser, matrix_env, locale=language)
            try:
                await other.open()
                await other.page.locator("#topic").select_option(index=0)
                await other.page.locator("#start-button").click()
                error = other.page.locator("#start-error")
                await expect(error).to_have_text(words["start.blocked"].replace("{number}", number))
                await expect(other.page.locator("#chat")).to_be_hidden()
            finally:
                await check_and_close(other)

        await officer.send(room, "!unblock")
        await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet and "lifted the block" in m.body,
                                   60, "the unblock's confirmation")
        blocked = False
        again = await new_citizen(browser, matrix_env)
        try:
            await again.open()
            await again.start()
            stored = await again.stored_session()
            async with aiohttp.ClientSession() as http:
                await http.post(f"{matrix_env.public_url}/api/v1/chats/{stored['chat_id']}/close",
                                headers={"Authorization": f"Bearer {stored['token']}"}, json={})
        finally:
            await check_and_close(again)
    finally:
        if blocked:
            await officer.send(room, "!unblock")
            await officer.wait_message(lambda m: m.room_id == room and "lifted the block" in m.body, 60, "unblock")
