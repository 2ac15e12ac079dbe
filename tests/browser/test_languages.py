"""Arabic right to left, Spanish by choice: every word of the page, system lines included, from the
translation files; the choice survives a reload; axe finds nothing in Arabic either."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from playwright.async_api import expect

from .conftest import CitizenPage, officer_ready

I18N = Path(__file__).parents[2] / "bridge" / "web" / "static" / "i18n"


def words(language: str) -> dict:
    return json.loads((I18N / f"{language}.json").read_text(encoding="utf-8"))


async def test_arabic_reads_right_to_left_and_the_citizen_can_switch_to_spanish(arabic_citizen: CitizenPage, officer,
                                                                                 bridge_log):
    ar, es = words("ar"), words("es")
    c, page = arabic_citizen, arabic_citizen.page
    await c.open()
    html = page.locator("html")
    await expect(html).to_have_attribute("lang", "ar")
    await expect(html).to_have_attribute("dir", "rtl")
    await expect(page.locator("#start-heading")).to_have_text(ar["start.heading"])
    await expect(page.locator("#quick-exit")).to_have_text(ar["exit.button"])
    await expect(page.locator(".emergency")).to_contain_text(ar["emergency.not_for"])
    await expect(page.locator("#language")).to_have_value("ar")
    await c.axe("start, in Arabic")
    await c.screenshots("start-ar")

    await c.start("General enquiry")
    # The bridge's own system line, shown by its code in Arabic (its body is the English text).
    queued = page.locator("#log > li.msg--system").first
    await expect(queued).to_have_text(ar["notice.queued"])
    first = f"مرحبا {uuid.uuid4().hex[:6]}"
    mine = await c.send(first)
    await expect(mine.locator(".msg__state")).to_have_text(ar["msg.delivered"])
    got = await officer.wait_message(lambda m: m.body == first, 60, "the Arabic message at the officer")
    await officer_ready(officer, got.room_id)
    await expect(page.locator("#chat-state")).to_have_text(ar["state.active"])
    joined = page.locator("#log > li.msg--system").nth(1)
    await expect(joined).to_contain_text(ar["notice.officer_joined"].split("{name}")[0].strip())
    reply = f"Hello {uuid.uuid4().hex[:6]}"
    await officer.send(got.room_id, reply)
    theirs = c.officer_message(reply)
    await expect(theirs).to_have_count(1)

    # Right to left: my bubbles sit on the left, the officer's on the right.
    mine_box, theirs_box = await mine.bounding_box(), await theirs.bounding_box()
    assert mine_box and theirs_box and mine_box["x"] < theirs_box["x"]
    await c.axe("chatting, in Arabic")
    await c.screenshots("chatting-ar")

    # The citizen picks Spanish: the whole page, the conversation's system lines too, left to right.
    await page.locator("#language").select_option("es")
    await expect(html).to_have_attribute("lang", "es")
    await expect(html).to_have_attribute("dir", "ltr")
    await expect(page.locator("#chat-state")).to_have_text(es["state.active"])
    await expect(queued).to_have_text(es["notice.queued"])
    await expect(mine.locator(".msg__state")).to_have_text(es["msg.delivered"])
    await expect(mine.locator(".msg__sender")).to_have_text(es["msg.you"])
    await expect(page.locator("#send-button")).to_have_text(es["composer.send"])
    await expect(theirs.locator(".msg__body")).to_have_text(reply)       # people's words are never translated

    # A reload keeps the choice (this tab only) and the same chat.
    await page.reload()
    await expect(page.locator("html[data-ready='1']")).to_have_count(1)
    await expect(html).to_have_attribute("lang", "es")
    await expect(page.locator("#log > li.msg--system").first).to_have_text(es["notice.queued"])
    await expect(c.officer_message(reply)).to_have_count(1)
    await c.axe("chatting, in Spanish")

    # Ending, in Spanish: the question, the ended state and the feedback form, all translated.
    await page.locator("#end-button").click()
    await page.get_by_role("button", name=es["end.yes"]).click()
    await expect(page.locator("#ended-text")).to_have_text(es["ended.text"])
    await expect(page.locator("#log > li.msg--system").last).to_have_text(es["notice.ended_by_visitor"])
    await expect(page.locator("#feedback-button")).to_have_text(es["feedback.send"])
    await c.axe("ended, in Spanish")
