"""WCAG 2.1 A/AA by axe-core in every state of the page, and a chat by keyboard alone."""
from __future__ import annotations

import re
import uuid

import nio
from playwright.async_api import Page, expect

from tests.support.bridge_db import room_of
from tests.support.waiting import until

from .conftest import NARROW, WIDE, CitizenPage, officer_ready

ZOOMED = {"width": 640, "height": 400}


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


async def test_axe_finds_nothing_in_any_state(citizen: CitizenPage, officer, matrix_env, bridge_log):
    page = citizen.page
    await citizen.open()
    await citizen.axe("start")

    # The officer holds back from answering, so the chat stays waiting while axe looks at it.
    officer.auto_join = lambda room_id: False
    await citizen.start("General enquiry")
    first = unique("Where do I report a lost passport?")
    await expect((await citizen.send(first)).locator(".msg__state")).to_have_text("Delivered")
    await expect(page.locator("#chat-state")).to_contain_text("Waiting for an officer")
    # Place in the queue, and an estimate only from real waits ("we don't know yet" without enough).
    await expect(page.locator("#queue")).to_have_text(re.compile(
        r"^Your place in the queue: \d+\. Estimated wait: (about \d+ minutes?|less than a minute|we don't know yet)\.$"))
    await citizen.axe("waiting")

    room_id = await room_of(matrix_env.dir / "precinct.db", (await citizen.stored_session())["chat_id"])
    await until(lambda: room_id in officer.client.invited_rooms, 60, "the officer's invite")
    assert isinstance(await officer.client.join(room_id), nio.JoinResponse)
    got = await officer.wait_message(lambda m: m.body == first, 60, "the citizen's message")
    await expect(page.locator("#chat-state")).to_have_text("An officer is with you.")
    await officer_ready(officer, got.room_id)
    reply = unique("You can report it online or here.")
    await officer.send(got.room_id, reply, msgtype="m.text")
    await officer.send(got.room_id, "checks the records", msgtype="m.emote")
    await officer.send(got.room_id, "Automated notice", msgtype="m.notice")
    await expect(citizen.officer_message(reply)).to_have_count(1)
    await expect(page.locator("#log > li.msg--notice")).to_have_count(1)
    await officer.client.room_typing(got.room_id, True, timeout=20000)
    await expect(page.locator("#typing")).to_contain_text("typing")
    await citizen.axe("chatting")
    await page.set_viewport_size(NARROW)
    await citizen.axe("chatting at 360 px")
    # 200% zoom of a 1280 x 800 window is a 640 x 400 CSS viewport: nothing wider, every control reachable.
    await page.set_viewport_size(ZOOMED)
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= ZOOMED["width"]
    for control in ("#quick-exit", "#message", "#send-button", "#attach-button", "#end-button"):
        await page.locator(control).scroll_into_view_if_needed()
        await expect(page.locator(control)).to_be_in_viewport()
    await citizen.axe("chatting at 200% zoom")
    await page.set_viewport_size(WIDE)

    await citizen.context.set_offline(True)
    await expect(page.locator("#connection")).to_contain_text("offline")
    await citizen.send(unique("Sent from a tunnel"))
    await citizen.axe("offline")
    await citizen.context.set_offline(False)
    await expect(page.locator("#connection")).to_be_hidden()

    await page.locator("#end-button").click()
    await expect(page.locator("#end-confirm")).to_be_visible()
    await citizen.axe("asking to end")
    await page.get_by_role("button", name="Yes, end the chat").click()
    await expect(page.locator("#ended")).to_be_visible()
    await citizen.axe("ended")


async def tab_to(page: Page, element_id: str, limit: int = 25) -> None:
    """Press Tab until ``element_id`` has the focus (and show that it is visibly focused)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement && document.activeElement.id") == element_id:
            outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("", "none"), f"#{element_id} has the focus but shows no focus ring"
            return
    raise AssertionError(f"#{element_id} never got the focus in {limit} presses of Tab")


async def test_keyboard_only_chat(citizen: CitizenPage, officer, bridge_log):
    """Tab, arrow keys, Enter and typing only: no clicks anywhere."""
    page = citizen.page
    await citizen.open()

    await tab_to(page, "topic")
    await page.keyboard.press("ArrowDown")                  # the second topic
    await expect(page.locator("#topic")).to_have_value("lost-property")
    await tab_to(page, "name")
    await page.keyboard.type("Kim")
    await tab_to(page, "start-button")
    await page.keyboard.press("Enter")
    await expect(page.locator("#chat")).to_be_visible()
    await expect(page.locator("#message")).to_be_focused()  # straight to writing

    first = unique("I found a wallet on the bus")
    await page.keyboard.type(first)
    await page.keyboard.press("Enter")
    await expect(citizen.own(first).locator(".msg__state")).to_have_text("Delivered")
    got = await officer.wait_message(lambda m: m.body == first, 60, "the keyboard citizen's message")
    assert "Kim" in (officer.client.rooms[got.room_id].user_name(got.sender) or "")
    await expect(page.locator("#chat-state")).to_have_text("An officer is with you.")

    # The conversation itself can be reached and scrolled from the keyboard.
    await page.keyboard.press("Shift+Tab")
    await expect(page.locator("#conversation")).to_be_focused()
    await tab_to(page, "message")

    # Ending by keyboard: End chat, then the question, then Yes; the focus lands on the ended text.
    await tab_to(page, "end-button")
    await page.keyboard.press("Enter")
    await expect(page.locator("#end-confirm-text")).to_be_focused()
    await page.keyboard.press("Escape")                     # changed my mind
    await expect(page.locator("#end-confirm")).to_be_hidden()
    await expect(page.locator("#end-button")).to_be_focused()
    await page.keyboard.press("Enter")
    await tab_to(page, "end-yes")
    await page.keyboard.press("Enter")
    await expect(page.locator("#ended")).to_be_visible()
    await expect(page.locator("#ended-text")).to_be_focused()

    # Feedback by keyboard: into the rating, arrows to pick, Tab to the button, Enter.
    await tab_to(page, "rating-1")
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#rating-3")).to_be_checked()
    await tab_to(page, "feedback-button")
    await page.keyboard.press("Enter")
    await expect(page.locator("#feedback-done")).to_be_focused()
    await until(lambda: any("ended the chat" in m.body for m in officer.messages if m.room_id == got.room_id),
                60, "the officer told the chat ended")
