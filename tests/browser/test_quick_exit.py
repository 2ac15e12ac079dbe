"""Quick exit: one press replaces the chat with a neutral site and leaves nothing of it in the tab."""
from __future__ import annotations

import uuid

from playwright.async_api import expect

from tests.conftest import MatrixEnv
from tests.support.agency_site import AgencySite

from .conftest import CitizenPage


async def test_quick_exit_shows_the_neutral_site_and_leaves_no_chat_data(citizen: CitizenPage, matrix_env: MatrixEnv,
                                                                        agency_site: AgencySite, bridge_log):
    page = citizen.page
    await citizen.open()
    # Reachable at once by keyboard: the first control of the page.
    await page.keyboard.press("Tab")
    await expect(page.locator("#quick-exit")).to_be_focused()

    await page.locator("#language").select_option("es")           # something else of ours in storage, too
    await citizen.start("General enquiry")
    mine = await citizen.send(f"Please do not let him see this {uuid.uuid4().hex[:6]}")
    await expect(mine.locator(".msg__state")).to_have_text("Entregado")
    assert (await citizen.stored_session())["token"]

    await page.locator("#quick-exit").click()
    neutral = matrix_env.config["site"]["quick_exit_url"]
    await expect(page).to_have_url(neutral)
    await expect(page.locator("h1")).to_have_text("Weather today")

    # "Back" does not bring the chat back: the chat page was replaced in the history, not left.
    await page.go_back()
    assert not page.url.startswith(citizen.url), page.url

    # Nothing of the chat (or of the language choice) is left in this tab's storage for the bridge's site.
    await page.goto(matrix_env.public_url + "/health")
    left = await page.evaluate("() => [sessionStorage.length, localStorage.length]")
    assert left == [0, 0], left
