"""The widget: one <script> tag on the agency's own site opens the chat in an iframe that the host
page's CSS cannot reach; a site the agency never allowed can neither frame the chat nor open a
chat's WebSocket, even with a valid token."""
from __future__ import annotations

import re
import uuid

import aiohttp
from playwright.async_api import Browser, expect

from tests.conftest import MatrixEnv
from tests.support.agency_site import AgencySite
from tests.support.waiting import until

from .conftest import RECORD_CSP, WIDE, accessible_at_every_size, officer_ready

TRY_WEBSOCKET = """([url, token]) => new Promise((resolve) => {
  const seen = [];
  const ws = new WebSocket(url);
  ws.onopen = () => { seen.push("open"); ws.send(JSON.stringify({type: "auth", token, since: 0})); };
  ws.onmessage = (e) => { seen.push(JSON.parse(e.data).type); ws.close(); };
  ws.onclose = (e) => resolve({seen, code: e.code});
})"""


async def new_chat(env: MatrixEnv) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.post(env.public_url + "/api/v1/chats", json={"topic": "general"}) as r:
            assert r.status == 201, await r.text()
            return await r.json()


async def test_widget_on_the_agencys_site_works_end_to_end(browser: Browser, matrix_env: MatrixEnv,
                                                           agency_site: AgencySite, officer, bridge_log):
    context = await browser.new_context(viewport=WIDE, locale="en-GB")
    try:
        await context.add_init_script(RECORD_CSP)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(agency_site.origin + "/")
        launcher = page.get_by_role("button", name="Chat with the police")
        await expect(launcher).to_have_attribute("aria-expanded", "false")
        # Only what the widget adds is ours to judge: the test site's own text is deliberately garish
        # ("* { color: #ff00ff !important }"), which must not make the launcher unreadable either.
        await accessible_at_every_size(page, "the widget's launcher on an agency's page", ["#precinct-launcher"])
        await launcher.click()
        await expect(launcher).to_have_attribute("aria-expanded", "true")

        frame = page.frame_locator("#precinct-frame")
        await expect(frame.locator("html")).to_have_class(re.compile("is-embedded"))
        await expect(frame.locator("#topic option")).to_have_count(len(matrix_env.config["topics"]))
        await frame.locator("#start-button").click()
        await expect(frame.locator("#chat")).to_be_visible()
        first = f"Hello from the agency's site {uuid.uuid4().hex[:6]}"
        await frame.locator("#message").fill(first)
        await frame.locator("#message").press("Enter")
        await expect(frame.locator("#log > li.msg--visitor .msg__state")).to_have_text("Delivered")
        got = await officer.wait_message(lambda m: m.body == first, 60, "the widget citizen's message")
        await officer_ready(officer, got.room_id)
        reply = f"Hello, how can we help? {uuid.uuid4().hex[:6]}"
        await officer.send(got.room_id, reply)
        await expect(frame.locator("#log > li.msg--officer .msg__body")).to_have_text(reply)

        # The host page paints everything magenta in a fantasy font; none of it reaches the chat.
        styles = await frame.locator("#chat-heading").evaluate(
            "e => [getComputedStyle(e).color, getComputedStyle(e).fontFamily]")
        assert styles[0] != "rgb(255, 0, 255)" and "fantasy" not in styles[1]
        assert await page.evaluate("() => getComputedStyle(document.querySelector('h1')).color") == "rgb(255, 0, 255)"

        # Quick exit inside the widget replaces the agency's whole page with the neutral one.
        await frame.locator("#quick-exit").click()
        await expect(page).to_have_url(matrix_env.config["site"]["quick_exit_url"])
        await expect(page.locator("h1")).to_have_text("Weather today")
        assert not errors, errors
    finally:
        await context.close()


async def test_a_site_not_allowed_can_neither_frame_the_chat_nor_open_its_websocket(
        browser: Browser, matrix_env: MatrixEnv, agency_site: AgencySite, other_site: AgencySite, bridge_log):
    chat = await new_chat(matrix_env)
    context = await browser.new_context(viewport=WIDE, locale="en-GB")
    try:
        page = await context.new_page()
        # The same WebSocket call with the same valid token: from the agency's site it is answered…
        await page.goto(agency_site.origin + "/")
        allowed = await page.evaluate(TRY_WEBSOCKET, [chat["ws_url"], chat["token"]])
        assert allowed["seen"][:2] == ["open", "ready"], allowed

        # …from a site the agency never allowed, the handshake itself is refused.
        await page.goto(other_site.origin + "/")
        refused = await page.evaluate(TRY_WEBSOCKET, [chat["ws_url"], chat["token"]])
        assert refused == {"seen": [], "code": 1006}, refused

        # Its widget's iframe gets no chat page: the bridge's frame-ancestors leave that site out.
        await page.get_by_role("button", name="Chat with the police").click()
        handle = await page.locator("#precinct-frame").element_handle()
        assert handle is not None
        framed = await until(handle.content_frame, 30, "the widget's iframe")
        await until(lambda: framed.url.startswith("chrome-error://"), 30, "the browser to refuse the frame")
        assert await framed.locator("#start").count() == 0
    finally:
        await context.close()
