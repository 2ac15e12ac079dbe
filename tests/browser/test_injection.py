"""Hostile text from either side is shown as text: no element, no script, no dialog."""
from __future__ import annotations

import uuid

from playwright.async_api import expect

from .conftest import CitizenPage, open_chat

PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
            '<a href="javascript:alert(1)">click me</a>', "javascript:alert(document.cookie)"]
NO_MARKUP = "#log img, #log script, #log a, #log iframe, #log svg, #log object, #log embed, #log [onerror]"


async def test_officer_and_citizen_markup_renders_as_text(citizen: CitizenPage, officer, bridge_log):
    page = citizen.page
    tag = uuid.uuid4().hex[:6]
    got = await open_chat(citizen, officer, f"hello {tag}")

    # Officer side: as plain bodies, and as a formatted (HTML) message with a javascript: link.
    for payload in PAYLOADS:
        await officer.send(got.room_id, f"{payload} {tag}")
    await officer.send(got.room_id, f"see [this page](javascript:alert(2)) {tag}", format="org.matrix.custom.html",
                       formatted_body=f'see <a href="javascript:alert(2)">this page</a>'
                                      f'<img src=x onerror=alert(3)><script>alert(4)</script> {tag}')
    for payload in PAYLOADS:
        await expect(citizen.officer_message(f"{payload} {tag}")).to_have_count(1)
    await expect(page.locator("#log > li.msg--officer")).to_have_count(len(PAYLOADS) + 1)

    # Citizen side: the same strings typed into the page go out exactly as typed.
    for payload in PAYLOADS:
        mine = await citizen.send(f"{payload} {tag}")
        await expect(mine.locator(".msg__state")).to_have_text("Delivered")
    for payload in PAYLOADS:
        await officer.wait_message(lambda m, p=payload: m.body == f"{p} {tag}", 60, f"{payload!r} at the officer")

    await expect(page.locator(NO_MARKUP)).to_have_count(0)
    assert citizen.dialogs == [], "a payload ran"
    # Every body on the page is the stored text itself (the formatted one as the bridge flattened it).
    api = await citizen.api_messages()
    stored = [(m["seq"], m["body"]) for m in api["messages"] if m["kind"] == "text"]
    shown = [(m["seq"], m["body"]) for m in await citizen.rendered()]
    assert shown == stored
    flattened = next(body for _, body in stored if body.startswith("see this page"))
    assert "<" not in flattened and "alert(3)" not in flattened and "alert(4)" not in flattened
