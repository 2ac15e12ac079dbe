"""A full queue (issue 10): the page says "we are busy" in the citizen's language, with the phone and
emergency numbers, and no chat is started. The "lazydesk" agency (tests/conftest.py) takes 3 waiting chats."""
from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import expect

from .conftest import check_and_close, new_citizen

SPANISH = json.loads((Path(__file__).parents[2] / "bridge/web/static/i18n/es.json").read_text(encoding="utf-8"))


async def test_a_full_queue_is_refused_in_the_citizens_language_with_the_numbers_to_call(browser, matrix_env,
                                                                                         visitors, bridge_log):
    queue = [visitors() for _ in range(3)]
    for v in queue:
        await v.create(topic="lazy")
        await v.connect()                # open pages: these chats stay in the queue
    citizen = await new_citizen(browser, matrix_env, locale="es-ES")
    try:
        await citizen.open()
        await citizen.page.locator("#topic").select_option(label="Quiet desk")
        await citizen.page.locator("#start-button").click()
        expected = SPANISH["start.busy_phone"].replace("{phone}", "101").replace("{number}", "999")
        await expect(citizen.page.locator("#start-error")).to_have_text(expected)
        await expect(citizen.page.locator("#chat")).to_be_hidden()
    finally:
        await check_and_close(citizen)
