"""A full queue (issue 10): the page says "we are busy" in the citizen's language, with the phone and
emergency numbers, and no chat is started. The test's own agency (tests/support/agencies.py) takes 3 waiting
chats, so the three it opens fill it whatever other tests left waiting elsewhere."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import expect

from .conftest import check_and_close, new_citizen

SPANISH = json.loads((Path(__file__).parents[2] / "bridge/web/static/i18n/es.json").read_text(encoding="utf-8"))


@pytest.mark.agency(label="Quiet desk", max_waiting_chats=3)
async def test_a_full_queue_is_refused_in_the_citizens_language_with_the_numbers_to_call(browser, matrix_env, agency,
                                                                                         visitors, bridge_log):
    queue = [visitors() for _ in range(3)]
    for v in queue:
        await v.create(topic=agency.topic)
        await v.connect()                # open pages: these chats stay in the queue
    citizen = await new_citizen(browser, matrix_env, locale="es-ES")
    try:
        await citizen.open()
        await citizen.page.locator("#topic").select_option(label=agency.label)
        await citizen.page.locator("#start-button").click()
        expected = SPANISH["start.busy_phone"].replace("{phone}", "101").replace("{number}", "999")
        await expect(citizen.page.locator("#start-error")).to_have_text(expected)
        await expect(citizen.page.locator("#chat")).to_be_hidden()
    finally:
        await check_and_close(citizen)
