"""Outside a topic's hours the page offers a message form instead of a chat; a message with an
emergency word raises a "call the emergency number now" banner that stays for the chat."""
from __future__ import annotations

import re
import uuid

from playwright.async_api import expect

from tests.conftest import MatrixEnv
from tests.support.bridge_db import stored_ticket

from .conftest import CitizenPage, accessible_at_every_size


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


async def test_a_closed_topic_offers_the_message_form(citizen: CitizenPage, matrix_env: MatrixEnv, bridge_log):
    page = citizen.page
    await citizen.open()
    await expect(page.locator("#offline-form")).to_be_hidden()
    await page.locator("#topic").select_option(label="After hours")
    await expect(page.locator("#offline-form")).to_be_visible()
    await expect(page.locator("#start-button")).to_be_hidden()
    await accessible_at_every_size(page, "message form of a closed topic")

    await page.locator("#offline-button").click()
    await expect(page.locator("#offline-error")).to_have_text("Please write your message first.")
    text = unique("My neighbour's alarm has been ringing all night")
    await page.locator("#offline-message").fill(text)
    await page.locator("#offline-name").fill("Robin")
    await page.locator("#offline-contact").fill("robin@example.org")
    await page.locator("#offline-button").click()
    done = page.locator("#offline-done")
    await expect(done).to_have_text(re.compile(r"^Thank you\. We have received your message\. "
                                               r"Your reference number is \d+\.$"))
    await expect(done).to_be_focused()
    ticket = int(re.search(r"(\d+)\.$", await done.text_content() or "").group(1))  # type: ignore[union-attr]
    assert stored_ticket(matrix_env.dir / "precinct.db", ticket) == ("after-hours", text, "Robin", "robin@example.org")
    await expect(page.locator("#offline-message")).to_have_value("")

    # Back to a topic answered now: the chat can be started again.
    await page.locator("#topic").select_option(label="General enquiry")
    await expect(page.locator("#offline-form")).to_be_hidden()
    await expect(page.locator("#start-button")).to_be_visible()


async def test_an_emergency_word_raises_the_call_now_banner(citizen: CitizenPage, bridge_log):
    page = citizen.page
    await citizen.open()
    await citizen.start("General enquiry")
    banner = page.locator("#emergency-banner")
    await expect(banner).to_be_hidden()
    mine = await citizen.send(unique("There is a man with a knife outside"))
    await expect(mine.locator(".msg__state")).to_have_text("Delivered")
    await expect(banner).to_be_visible()
    await expect(banner).to_have_attribute("role", "alert")
    await expect(banner.get_by_role("link", name="999")).to_have_attribute("href", "tel:999")
    await citizen.axe("emergency banner")
    await citizen.screenshots("emergency")

    await page.reload()                                   # it stays for the rest of the chat
    await expect(page.locator("html[data-ready='1']")).to_have_count(1)
    await expect(banner).to_be_visible()

    # Ended, so this urgent chat does not stay at the front of the queue for later tests.
    await page.locator("#end-button").click()
    await page.get_by_role("button", name="Yes, end the chat").click()
    await expect(page.locator("#ended")).to_be_visible()
    await expect(banner).to_be_visible()                  # the number stays in view after the end too
