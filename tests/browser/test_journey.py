"""The citizen's whole conversation in a real Chromium, against the real bridge and Synapse,
with an officer on a real encrypted Matrix client."""
from __future__ import annotations

import re
import uuid

from playwright.async_api import expect

from tests.support.waiting import until
from tests.support.bridge_db import stored_feedback

from .conftest import CitizenPage, officer_ready


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


async def test_journey_from_guest_link_to_the_end(citizen: CitizenPage, officer, matrix_env, bridge_log):
    page = citizen.page
    await citizen.open()

    # Before the chat: the not-for-emergencies notice with a number the phone can call.
    notice = page.locator(".emergency")
    await expect(notice).to_contain_text("not for emergencies")
    await expect(notice.get_by_role("link", name="999")).to_have_attribute("href", "tel:999")
    # The topics are the configured ones, by label.
    labels = [t["label"] for t in matrix_env.config["topics"]]
    await expect(page.locator("#topic option")).to_have_text(labels)
    await citizen.screenshots("start")

    await citizen.start("Lost property", name="Sam")
    await expect(page.locator("#chat-state")).to_contain_text("Waiting for an officer")
    first = unique("I lost my bike near the station")
    mine = await citizen.send(first)
    # Sending…, then Delivered once the bridge has acknowledged (stored) it.
    await expect(mine.locator(".msg__state")).to_have_text("Delivered")

    # The officer reads it, decrypted, in the chat's encrypted room for that topic.
    got = await officer.wait_message(lambda m: m.body == first, 60, "the citizen's message at the officer")
    room = officer.client.rooms[got.room_id]
    assert room.encrypted and "Lost property" in room.display_name
    await officer_ready(officer, got.room_id)
    await expect(page.locator("#chat-state")).to_have_text("An officer is with you.")
    await expect(page.locator("#log > li.msg--system").filter(has_text="has joined the chat.")).to_have_count(1)

    # Officer typing shows on the page, and goes away.
    await officer.client.room_typing(got.room_id, True, timeout=20000)
    await expect(page.locator("#typing")).to_contain_text("typing")
    await officer.client.room_typing(got.room_id, False)
    await expect(page.locator("#typing")).to_have_text("")

    # Citizen typing reaches the officer's client.
    answer = unique("It is a red bicycle")
    await page.locator("#message").press_sequentially(answer[:10])
    await until(lambda: got.sender in officer.client.rooms[got.room_id].typing_users, 30,
                "the citizen's typing at the officer")

    # The officer replies; the page shows it with the officer's name.
    reply = unique("Thanks Sam, what colour is it?")
    await officer.send(got.room_id, reply)
    shown = citizen.officer_message(reply)
    await expect(shown).to_have_count(1)
    await expect(shown.locator(".msg__sender")).not_to_be_empty()
    await expect(shown.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))

    # The citizen finishes the answer; sending ends the typing notice at the officer.
    await page.locator("#message").press_sequentially(answer[10:])
    await page.locator("#message").press("Enter")
    await expect(citizen.own(answer).locator(".msg__state")).to_have_text("Delivered")
    await officer.wait_message(lambda m: m.body == answer, 60, "the citizen's answer")
    await until(lambda: got.sender not in officer.client.rooms[got.room_id].typing_users, 30,
                "the citizen's typing to stop at the officer")
    await citizen.screenshots("chatting")

    # Ending: asked on the page (no browser dialog), then the ended state; the officer is told.
    await page.locator("#end-button").click()
    await expect(page.locator("#end-confirm")).to_be_visible()
    await page.get_by_role("button", name="Yes, end the chat").click()
    await expect(page.locator("#ended")).to_be_visible()
    await expect(page.locator("#composer")).to_be_hidden()
    await expect(page.locator("#chat-state")).to_have_text("This chat has ended.")
    await expect(page.locator("#ended-text")).to_be_focused()
    await officer.wait_message(lambda m: m.room_id == got.room_id and "ended the chat" in m.body, 60,
                               "the 'citizen has ended the chat' notice")
    await citizen.screenshots("ended")

    # Feedback: 1-5 and a comment, stored for the force's reports.
    await page.locator("label[for=rating-4]").click()
    await expect(page.get_by_role("radio", name="4")).to_be_checked()
    comment = unique("Quick and kind")
    await page.locator("#feedback-comment").fill(comment)
    await page.get_by_role("button", name="Send feedback").click()
    await expect(page.locator("#feedback-done")).to_have_text("Thank you for your feedback.")
    await expect(page.locator("#feedback-form")).to_be_hidden()
    chat_id = (await citizen.stored_session())["chat_id"]
    assert stored_feedback(matrix_env.dir / "precinct.db", chat_id) == (4, comment)

    # The citizen's own transcript: every message of the conversation, in order.
    async with page.expect_download() as download:
        await page.get_by_role("link", name="Download a copy of this chat").click()
    saved = await (await download.value).path()
    transcript = saved.read_text(encoding="utf-8")
    positions = [transcript.index(text) for text in (first, reply, answer)]
    assert positions == sorted(positions), transcript
    for line in ("You are in the queue.", "has joined the chat.", "The chat has ended."):
        assert line in transcript, transcript
    assert (await download.value).suggested_filename.startswith("chat-")
    async with page.expect_download() as printable:
        await page.get_by_role("link", name="Download it as a web page").click()
    assert (await printable.value).suggested_filename.endswith(".html")
    page_copy = (await (await printable.value).path()).read_text(encoding="utf-8")
    assert first in page_copy and answer in page_copy and "<script" not in page_copy

    # What the page shows is what the bridge stored, in order, each message once.
    api = await citizen.api_messages()
    assert api["state"] == "closed"
    shown_all = await citizen.rendered()
    assert [(m["seq"], m["from"], m["body"]) for m in shown_all] == \
        [(m["seq"], m["from"], m["body"]) for m in api["messages"] if m["kind"] in ("text", "notice")]
    assert [m["from"] for m in shown_all if m["body"] in (first, answer, reply)] == ["visitor", "officer", "visitor"]
