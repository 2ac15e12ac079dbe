"""The proof-of-work gate in a real browser (issue 10), on the bridge that has it on (tests/support/pow_bridge.py):
the page solves the challenge in its Web Worker, a citizen who presses Start before it is done is told
(in their language) that the chat is getting ready, and the chat starts; the page still passes axe.
The widget (the same page in an iframe on the agency's site) works too."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Request, Route, expect

from bridge.web import pow
from tests.support.agency_site import AgencySite
from tests.support.pow_bridge import PowBridgeEnv

from .conftest import RECORD_CSP, WIDE, check_and_close, new_citizen

STATIC = Path(__file__).parents[2] / "bridge/web/static"
SPANISH = json.loads((STATIC / "i18n/es.json").read_text(encoding="utf-8"))
WORKER = "/static/js/pow-worker.js"


class Watched:
    """The page's workers and the bodies of its POST /api/v1/chats, frames included."""

    def __init__(self, page: Page) -> None:
        self.workers: list[str] = []
        self.chat_posts: list[dict[str, Any]] = []
        page.on("worker", lambda w: self.workers.append(w.url))
        page.on("request", self._request)

    def _request(self, request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/chats"):
            self.chat_posts.append(request.post_data_json)

    def assert_solved_in_the_worker(self) -> None:
        assert any(url.endswith(WORKER) for url in self.workers), self.workers
        assert self.chat_posts, "no chat was asked for"
        proof = self.chat_posts[-1]["pow"]
        bits = int(proof["challenge"].split(".")[1])
        assert pow.solves(proof["challenge"], proof["answer"], bits), proof


async def test_a_citizen_starts_a_chat_with_the_gate_on_and_waits_for_it_with_a_spoken_status(
        browser: Browser, pow_env: PowBridgeEnv):
    citizen = await new_citizen(browser, pow_env, locale="es-ES")      # type: ignore[arg-type]
    page = citizen.page
    watched = Watched(page)
    # The challenge is held back until the citizen has pressed Start, so the page is still preparing then.
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()
    await page.route("**/api/v1/challenge", hold)
    try:
        await citizen.open()
        await page.locator("#name").fill("Ana")
        await page.locator("#start-button").click()
        await expect(page.locator("#start-status")).to_have_text(SPANISH["start.preparing"])
        await expect(page.locator("#start-status")).to_have_attribute("role", "status")
        await expect(page.locator("#start-button")).to_be_disabled()
        await expect(page.locator("#start-button")).to_have_text(SPANISH["start.starting"])
        await citizen.axe("preparing")
        assert not watched.chat_posts, "nothing is sent before the work is done"

        release.set()
        await expect(page.locator("#chat")).to_be_visible()
        await expect(page.locator("#start-status")).to_have_text("")
        watched.assert_solved_in_the_worker()
        text = f"Hola {uuid.uuid4().hex[:6]}"
        mine = await citizen.send(text)
        await expect(mine.locator(".msg__state")).to_have_text(SPANISH["msg.delivered"])
        assert [m["body"] for m in (await citizen.api_messages())["messages"] if m["from"] == "visitor"] == [text]
        await citizen.axe("chatting")
    finally:
        release.set()
        await check_and_close(citizen)


async def test_the_widget_on_the_agencys_site_starts_a_chat_with_the_gate_on(browser: Browser, pow_env: PowBridgeEnv):
    site = AgencySite(pow_env.agency_site, pow_env.public_url)
    await site.start()
    context = await browser.new_context(viewport=WIDE, locale="en-GB")
    try:
        await context.add_init_script(RECORD_CSP)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        watched = Watched(page)
        await page.goto(site.origin + "/")
        await page.get_by_role("button", name="Chat with the police").click()
        frame = page.frame_locator("#precinct-frame")
        await expect(frame.locator("#topic option")).to_have_count(len(pow_env.config["topics"]))
        await frame.locator("#topic").select_option(label="General enquiry")
        await frame.locator("#start-button").click()
        await expect(frame.locator("#chat")).to_be_visible()
        watched.assert_solved_in_the_worker()          # the iframe's worker, from the bridge's origin
        await frame.locator("#message").fill("Hello from the widget")
        await frame.locator("#message").press("Enter")
        await expect(frame.locator("#log > li.msg--visitor .msg__state")).to_have_text("Delivered")
        violations = await frame.locator("html").evaluate("() => window.__csp || []")
        assert not violations and not errors, (violations, errors)
    finally:
        await context.close()
        await site.stop()
