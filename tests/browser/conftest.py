"""Real-browser fixtures: one Debian Chromium per session, a fresh Playwright context per test.

The page under test is the bundled citizen page at ``/chat`` on the session's real bridge (with
its real Synapse, see tests/conftest.py), under the CSP the bridge sends: nothing here bypasses it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright, expect

from bridge.devtools.localhs import free_port
from tests.conftest import MatrixEnv
from tests.support.agency_site import AgencySite
from tests.support.browser import ChromiumProcess

HERE = Path(__file__).parent
ARTIFACTS = HERE.parent / "artifacts"
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
WIDE, NARROW = {"width": 1280, "height": 800}, {"width": 360, "height": 740}
ZOOM_200 = {"width": 640, "height": 400}       # a 1280 × 800 window at 200 % zoom, in CSS pixels (WCAG reflow)


async def axe_check(page: Page, state: str, include: list[str] | None = None) -> None:
    """axe-core's WCAG 2.1 A/AA rules on any page as it is now: no violations (``include``: only in these
    elements, e.g. ours on an agency's page whose own styling is not ours to judge)."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        # add_script_tag would add an inline <script>, which the pages' CSP rightly blocks;
        # evaluating the source through DevTools needs no CSP exception.
        await page.evaluate(AXE.read_text())
    result = await page.evaluate(
        "([tags, include]) => axe.run(include ? {include: include.map(s => [s])} : document,"
        " {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", [WCAG_TAGS, include])
    problems = [f"{v['id']} ({v['impact']}): {v['help']} — " +
                "; ".join(n["target"][0] if isinstance(n["target"][0], str) else str(n["target"])
                          for n in v["nodes"][:5])
                for v in result["violations"]]
    assert not problems, f"axe violations in the {state} state:\n" + "\n".join(problems)


async def accessible_at_every_size(page: Page, state: str, include: list[str] | None = None) -> None:
    """Nothing is wider than the window at 1280 px, 360 px and 200 % zoom, and axe finds nothing at the two
    narrow ones (where layouts change; the rules it runs do not depend on a wide window otherwise)."""
    for size in (WIDE, NARROW, ZOOM_200):
        await page.set_viewport_size(size)
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= size["width"], f"{state}: the page is {width} px wide in a {size['width']} px window"
        if size is not WIDE:
            await axe_check(page, f"{state} at {size['width']} px", include)
    await page.set_viewport_size(WIDE)

# Everything the page does goes through the real bridge and Synapse: be generous, never sleep.
expect.set_options(timeout=30_000)

# Before any script of the page runs: remember CSP violations, so a test can say there were none.
RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline")));
"""


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    dir = tmp_path_factory.mktemp("chromium")
    proc = ChromiumProcess(dir / "profile", dir / "chromium.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def browser(chromium: ChromiumProcess):
    playwright = await async_playwright().start()
    try:
        browser = await playwright.chromium.connect_over_cdp(chromium.cdp_url)
        try:
            yield browser
        finally:
            await browser.close()      # closes this test's contexts and disconnects; Chromium stays
    finally:
        await playwright.stop()


class CitizenPage:
    """The citizen's tab, with the few steps every test takes and what the page shows, as data."""

    def __init__(self, context: BrowserContext, page: Page, env: MatrixEnv) -> None:
        self.context, self.page, self.env = context, page, env
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    @property
    def url(self) -> str:
        return self.env.public_url + "/chat"

    async def open(self, query: str = "") -> None:
        await self.page.goto(self.url + query)
        # The page's words are loaded (static/i18n) and the language chosen.
        await expect(self.page.locator("html[data-ready='1']")).to_have_count(1)
        # The configured topics come from GET /api/v1/site: the start screen is ready with them.
        await expect(self.page.locator("#topic option")).to_have_count(len(self.env.config["topics"]))

    async def start(self, topic_label: str = "General enquiry", name: str | None = None) -> None:
        await self.page.locator("#topic").select_option(label=topic_label)
        if name is not None:
            await self.page.locator("#name").fill(name)
        await self.page.locator("#start-button").click()
        await expect(self.page.locator("#chat")).to_be_visible()
        await expect(self.page.locator("#chat-number")).to_have_text(re.compile(r"\b\d{4,}\b"))   # the reference

    async def send(self, text: str) -> Locator:
        box = self.page.locator("#message")
        await box.fill(text)
        await box.press("Enter")
        return self.own(text)

    def own(self, text: str) -> Locator:
        return self.page.locator("#log > li.msg--visitor").filter(
            has=self.page.locator(".msg__body", has_text=re.compile("^" + re.escape(text) + "$")))

    def officer_message(self, text: str) -> Locator:
        return self.page.locator("#log > li.msg--officer").filter(
            has=self.page.locator(".msg__body", has_text=re.compile("^" + re.escape(text) + "$")))

    async def rendered(self) -> list[dict[str, Any]]:
        """The conversation as the page shows it: one entry per list item, in page order."""
        return await self.page.evaluate("""() => Array.from(document.querySelectorAll("#log > li")).map(li => ({
            seq: li.dataset.seq ? Number(li.dataset.seq) : null,
            from: ["officer", "visitor", "system"].find(f => li.classList.contains("msg--" + f)),
            body: li.querySelector(".msg__body").textContent,
            state: (li.querySelector(".msg__state") || {}).textContent || null,
            unconfirmed: li.classList.contains("is-unconfirmed"),
        }))""")

    async def stored_session(self) -> dict[str, Any]:
        raw = await self.page.evaluate("() => sessionStorage.getItem('precinct.chat.v1')")
        assert raw, "the page keeps no chat in sessionStorage"
        return json.loads(raw)

    async def api_messages(self) -> dict[str, Any]:
        """GET /api/v1/chats/{id}/messages with the page's own token: what the bridge has stored."""
        s = await self.stored_session()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.env.public_url}/api/v1/chats/{s['chat_id']}/messages",
                                headers={"Authorization": f"Bearer {s['token']}"}) as r:
                assert r.status == 200, await r.text()
                return await r.json()

    async def csp_violations(self) -> list[str]:
        return await self.page.evaluate("() => window.__csp || []")

    async def axe(self, state: str) -> None:
        """axe-core's WCAG 2.1 A/AA rules on the page as it is now: no violations."""
        await axe_check(self.page, state)

    async def screenshots(self, state: str) -> None:
        """tests/artifacts/chat-<state>-{1280,360}.png; at 360 px nothing may be wider than the screen."""
        await self.page.evaluate("() => document.fonts.ready")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for size in (WIDE, NARROW):
            await self.page.set_viewport_size(size)
            width = await self.page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= size["width"], f"{state}: the page is {width} px wide in a {size['width']} px window"
            await self.page.screenshot(path=str(ARTIFACTS / f"chat-{state}-{size['width']}.png"), full_page=True)
        await self.page.set_viewport_size(WIDE)


async def new_citizen(browser: Browser, env: MatrixEnv, locale: str = "en-GB") -> CitizenPage:
    context = await browser.new_context(viewport=WIDE, locale=locale, timezone_id="Europe/London",
                                        accept_downloads=True)
    await context.add_init_script(RECORD_CSP)
    return CitizenPage(context, await context.new_page(), env)


async def check_and_close(c: CitizenPage) -> None:
    try:
        assert not c.dialogs, f"the page opened dialogs: {c.dialogs}"
        assert not c.errors, f"uncaught errors in the page: {c.errors}"
        assert not await c.csp_violations(), f"CSP violations: {await c.csp_violations()}"
    finally:
        await c.context.close()


@pytest.fixture
async def citizen(browser: Browser, matrix_env: MatrixEnv):
    c = await new_citizen(browser, matrix_env)
    try:
        yield c
    finally:
        await check_and_close(c)


@pytest.fixture
async def arabic_citizen(browser: Browser, matrix_env: MatrixEnv):
    """A citizen whose browser asks for Arabic."""
    c = await new_citizen(browser, matrix_env, locale="ar")
    try:
        yield c
    finally:
        await check_and_close(c)


@pytest.fixture
async def officer(officer_of):
    return await officer_of("central")


async def officer_ready(officer: Any, room_id: str) -> None:
    """Load the room's members at the officer before the officer's first send in it.

    matrix-nio's ``room_send`` does a key query of its own on the first send in a room whose
    members it has not loaded; if the sync loop has scheduled one at that moment, the loop's
    query finds nothing left to ask, raises ``LocalProtocolError('No key query required.')``, and
    ``sync_forever`` dies: the officer stops receiving. With the members loaded, ``room_send``
    never queries keys itself.
    """
    resp = await officer.client.joined_members(room_id)
    assert isinstance(resp, nio.JoinedMembersResponse), resp


async def open_chat(citizen: CitizenPage, officer: Any, first: str, topic_label: str = "General enquiry",
                    name: str | None = None):
    """Open /chat, start a chat, send ``first``; returns the officer's copy once the officer has joined."""
    await citizen.open()
    await citizen.start(topic_label, name)
    await expect(citizen.page.locator("#message")).to_be_focused()
    mine = await citizen.send(first)
    await expect(mine.locator(".msg__state")).to_have_text("Delivered")
    got = await officer.wait_message(lambda m: m.body == first, 60, "the citizen's first message")
    await expect(citizen.page.locator("#chat-state")).to_have_text("An officer is with you.")
    await officer_ready(officer, got.room_id)
    return got


@pytest.fixture
async def agency_site(matrix_env: MatrixEnv):
    """The agency's website (allowed in web.embed_origins), with the widget and the quick-exit page."""
    site = AgencySite(matrix_env.agency_site, matrix_env.public_url)
    await site.start()
    try:
        yield site
    finally:
        await site.stop()


@pytest.fixture
async def other_site(matrix_env: MatrixEnv):
    """A website the agency never allowed, on yet another loopback origin, trying the same widget."""
    site = AgencySite(f"http://127.0.0.3:{free_port('127.0.0.3')}", matrix_env.public_url, "Not the police")
    await site.start()
    try:
        yield site
    finally:
        await site.stop()
