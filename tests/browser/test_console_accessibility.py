"""Accessibility where supervisors work (issue 15): axe-core finds nothing on the console's pages — sign-in,
live queue, search and its results, a transcript with its hold form, reports, feedback, the practice form
(and its refusal), signed out — at
1280 px, 360 px and 200 % zoom, and each chart of the reports has a table of the same figures beside it."""
from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.conftest import MatrixEnv

from .conftest import accessible_at_every_size
from .test_console_browser import hooked_chat, new_link, signed_in_page


async def test_every_console_page_passes_axe_at_every_size(browser: Browser, matrix_env: MatrixEnv, officer_of,
                                                           bridge_log):
    words = "a bicycle taken from the station racks"
    visitor = await hooked_chat(matrix_env, officer_of, words)
    try:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(new_link(matrix_env))
        await accessible_at_every_size(page, "console sign-in")
        await context.close()

        page = await signed_in_page(browser, matrix_env)
        base = matrix_env.public_url + "/console"
        await accessible_at_every_size(page, "console live queue")
        await page.goto(base + "/search")
        await accessible_at_every_size(page, "console search")
        await page.get_by_label("Words or phrase").fill("bicycle taken from the station")
        await page.get_by_role("button", name="Search").click()
        await expect(page.get_by_role("heading", name="1 result")).to_be_visible()
        await accessible_at_every_size(page, "console search results")
        await page.goto(f"{base}/chats/{visitor.chat_id}")
        await expect(page.get_by_text(words)).to_be_visible()
        await accessible_at_every_size(page, "console transcript")
        await page.goto(base + "/reports")
        charts = page.locator("svg.chart")
        assert await charts.count() >= 1
        for i in range(await charts.count()):
            # A text equivalent beside each chart: the figures as a table.
            table = charts.nth(i).locator("xpath=following::table[1]")
            await expect(table).to_have_count(1)
        await accessible_at_every_size(page, "console reports")
        await page.goto(base + "/feedback")
        await accessible_at_every_size(page, "console feedback")
        await page.goto(base + "/practice")
        await accessible_at_every_size(page, "console practice form")
        await page.get_by_label("Trainee (Matrix ID, optional)").fill("@nobody-here:localhost")
        await page.get_by_role("button", name="Start the practice chat").click()
        await expect(page.get_by_role("alert")).to_contain_text("is not an officer of")
        await accessible_at_every_size(page, "console practice form refused")
        await page.goto(base + "/")
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_text("You have signed out.")).to_be_visible()
        await accessible_at_every_size(page, "console signed out")
        await page.context.close()
    finally:
        await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/close", json={})
        await visitor.close()
