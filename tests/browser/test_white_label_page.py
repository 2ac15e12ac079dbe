"""White label and consent as the citizen sees them: the bridge's real public listener with an
agency's own config (name, logo, colours, welcome, privacy notice with required consent), in a
real Chromium. No chat is opened here, so no homeserver is needed: a request that reached the
chats would fail the test."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, expect

from bridge import config as cfg
from bridge.devtools.localhs import free_port
from bridge.web.server import public_app
from bridge.web.visitor_api import VisitorApi
from tests.integration.test_attachments import tiny_png
from tests.unit.test_config import good

from .conftest import RECORD_CSP, WIDE, CitizenPage

I18N = Path(__file__).parents[2] / "bridge" / "web" / "static" / "i18n"
SITE = {"service_name": "Northshire Constabulary", "welcome_text": "Welcome to Northshire's online desk.",
        "review_text": "Sergeants of Northshire may read chats to keep the service good.",
        "privacy_url": "https://police.example/privacy", "require_consent": True,
        "primary_color": "#6b2c91", "header_color": "#1d3b2a", "emergency_number": "112"}


async def _nothing_stored() -> None:
    """No store behind these pages: nothing to wait for before answering."""


class _NoChats:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the page reached ChatService.{name} without the citizen's consent")


@pytest.fixture
async def agency_bridge(tmp_path: Path):
    (tmp_path / "logo.png").write_bytes(tiny_png())
    raw = good()
    port = free_port()
    raw["web"] = {**raw.get("web", {}), "port": port, "public_url": f"http://127.0.0.1:{port}"}
    raw["site"] = {**raw["site"], **SITE, "logo": "logo.png"}
    for agency in raw["agencies"]:
        agency.pop("hours", None)           # always open: the start form, not the after-hours message form
    config = cfg.load(raw, tmp_path, {})
    runner = web.AppRunner(public_app(VisitorApi(config, store=None, chats=_NoChats()),  # type: ignore[arg-type]
                                      durable=_nothing_stored))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("locale", ["en-GB", "ar"])
async def test_the_agencys_name_logo_colours_and_consent(browser: Browser, agency_bridge: str, locale: str):
    context = await browser.new_context(viewport=WIDE, locale=locale)
    try:
        await context.add_init_script(RECORD_CSP)
        page = await context.new_page()
        posted: list[str] = []
        page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
        await page.goto(agency_bridge + "/chat")
        await expect(page.locator("html[data-ready='1']")).to_have_count(1)
        words = json.loads((I18N / f"{locale[:2]}.json").read_text(encoding="utf-8"))

        # The agency's own name and welcome, as written, in every language; the rest is translated.
        await expect(page.locator("#service-name")).to_have_text(SITE["service_name"])
        await expect(page).to_have_title(SITE["service_name"])
        await expect(page.locator("#welcome")).to_have_text(SITE["welcome_text"])
        await expect(page.locator("#review-notice")).to_have_text(SITE["review_text"])
        await expect(page.locator("#start-heading")).to_have_text(words["start.heading"])
        await expect(page.locator(".emergency").get_by_role("link", name="112")).to_have_attribute("href", "tel:112")
        logo = page.locator("#logo")
        await expect(logo).to_be_visible()
        assert await logo.evaluate("img => img.complete && img.naturalWidth") == 1
        header = await page.locator(".site-header").evaluate("e => getComputedStyle(e).backgroundColor")
        button = await page.locator("#start-button").evaluate("e => getComputedStyle(e).backgroundColor")
        assert (header, button) == ("rgb(29, 59, 42)", "rgb(107, 44, 145)")

        # Consent: the notice's link, and no chat without the tick.
        await expect(page.locator("#consent")).to_be_visible()
        await expect(page.locator("#privacy-link")).to_have_attribute("href", SITE["privacy_url"])
        await page.locator("#start-button").click()
        await expect(page.locator("#start-error")).to_have_text(words["consent.required"])
        await expect(page.locator("#consent")).to_be_focused()
        assert not posted, posted
        citizen = CitizenPage(context, page, None)  # type: ignore[arg-type]
        await citizen.axe(f"start with consent, {locale}")
        assert not await citizen.csp_violations()
    finally:
        await context.close()
