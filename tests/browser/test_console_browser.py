"""The supervisor console as a supervisor uses it, in Debian's Chromium: sign in from a one-time link,
search, export, set and lift a legal hold; and the same forms posted by other sites are refused.

Nothing here sets a header: what reaches the bridge is what Chromium sends (Origin, Sec-Fetch-Site,
cookies under their SameSite rules, the referrer policy the console's pages ask for).
"""
from __future__ import annotations

import html
import json
import re
import uuid
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from bridge.devtools.localhs import free_port
from tests.conftest import SERVER, SUPERVISOR, MatrixEnv
from tests.integration.test_console_live import audit_rows, console_link
from tests.integration.test_conversation import open_chat
from tests.support.agency_site import AgencySite
from tests.support.visitor import Visitor

from .conftest import WIDE

SUPERVISOR_ID = f"@{SUPERVISOR}:{SERVER}"


def new_link(env: MatrixEnv) -> str:
    result = console_link(env, SUPERVISOR_ID)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def signed_in_page(browser: Browser, env: MatrixEnv) -> Page:
    """A fresh browser context whose supervisor signed in from a new link, pressing the button."""
    context = await browser.new_context(viewport=WIDE, accept_downloads=True)
    page = await context.new_page()
    await page.goto(new_link(env))
    await page.get_by_role("button", name="Sign in to the console").click()
    await expect(page).to_have_url(env.public_url + "/console/")
    await expect(page.get_by_text("Live queue and active chats")).to_be_visible()
    return page


async def hooked_chat(env: MatrixEnv, officer_of, words: str) -> Visitor:
    officer = await officer_of("hooked")
    visitor = Visitor(env.public_url)
    await open_chat(visitor, officer, topic="hooked")
    await visitor.send(words)
    await officer.wait_message(lambda m: m.body == words, timeout=60)
    return visitor


def hold_of(env: MatrixEnv, chat_id: str) -> bool:
    import sqlite3
    conn = sqlite3.connect(f"file:{env.db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM legal_holds WHERE chat_id = ?", [chat_id]).fetchone()[0] > 0
    finally:
        conn.close()


async def test_a_supervisor_signs_in_searches_exports_and_holds_in_chromium(
        browser: Browser, matrix_env: MatrixEnv, officer_of, bridge_log, tmp_path: Path):
    words = "the garden gate of number nine was forced"
    visitor = await hooked_chat(matrix_env, officer_of, words)
    try:
        page = await signed_in_page(browser, matrix_env)
        assert (SUPERVISOR_ID, "ok") in [(a, o) for a, o, _ in audit_rows(matrix_env, "console.sign_in")]

        await page.goto(matrix_env.public_url + "/console/search")
        await page.get_by_label("Words or phrase").fill("garden gate of number nine")
        await page.get_by_role("button", name="Search").click()
        await expect(page.get_by_role("heading", name="1 result")).to_be_visible()
        await page.locator(f"a[href='/console/chats/{visitor.chat_id}']").click()
        await expect(page.get_by_text(words)).to_be_visible()

        async with page.expect_download() as info:
            await page.get_by_role("link", name="Export JSON").click()
        download = await info.value
        saved = tmp_path / "export.json"
        await download.save_as(saved)
        assert words in json.dumps(json.loads(saved.read_text()))

        await page.get_by_label("Reason").fill("court case 42")
        await page.get_by_role("button", name="Place under legal hold").click()
        await expect(page.get_by_text(re.compile(r"by " + re.escape(SUPERVISOR_ID) + r": court case 42"))).to_be_visible()
        assert hold_of(matrix_env, visitor.chat_id)
        await page.get_by_role("button", name="Lift legal hold").click()
        await expect(page.get_by_role("button", name="Place under legal hold")).to_be_visible()
        assert not hold_of(matrix_env, visitor.chat_id)
        assert SUPERVISOR_ID in [a for a, o, _ in audit_rows(matrix_env, "legal_hold.set") if o == "ok"]
        assert SUPERVISOR_ID in [a for a, o, _ in audit_rows(matrix_env, "legal_hold.lifted") if o == "ok"]

        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_text("You have signed out.")).to_be_visible()
        await page.context.close()
    finally:
        await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/close", json={})
        await visitor.close()


async def test_a_finished_chat_becomes_a_training_case_without_names_or_contact_details(
        browser: Browser, matrix_env: MatrixEnv, officer_of, bridge_log, tmp_path: Path):
    """Issue 15: the console exports a closed real chat for training, in Chromium as a supervisor does it;
    an open chat offers no such link."""
    words = "I am Robin Ashdown, 14 Mill Lane, LS1 4AB, call 07700 900456 or robin.a@example.org"
    officer = await officer_of("hooked")
    visitor = Visitor(matrix_env.public_url)
    try:
        await open_chat(visitor, officer, topic="hooked", display_name="Robin Ashdown")
        await visitor.send(words)
        await officer.wait_message(lambda m: m.body == words, timeout=60)
        page = await signed_in_page(browser, matrix_env)
        await page.goto(f"{matrix_env.public_url}/console/chats/{visitor.chat_id}")
        await expect(page.get_by_text(words)).to_be_visible()
        await expect(page.get_by_role("link", name="Export as a training case")).to_have_count(0)   # still open

        await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/close", json={})
        await page.reload()
        async with page.expect_download() as info:
            await page.get_by_role("link", name="Export as a training case").click()
        saved = tmp_path / "case.txt"
        await (await info.value).save_as(saved)
        case = saved.read_text()
        assert "Citizen: I am Citizen, [address], [postcode], call [number] or [email]" in case
        for secret in ("Robin", "Ashdown", "Mill Lane", "LS1", "07700", "example.org", "hookofficer"):
            assert secret not in case, secret
        assert (SUPERVISOR_ID, "ok") in [(a, o) for a, o, t in audit_rows(matrix_env, "transcript.training_case")]
        await page.context.close()
    finally:
        await visitor.close()


FORGED = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Win a prize</title></head><body>
<form id="hold" method="post" action="{bridge}/console/chats/{chat}/hold">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="action" value="set">
<input type="hidden" name="reason" value="forged"><button>Hold</button></form>
<form id="sign-in" method="post" action="{bridge}/console/sign-in">
<input type="hidden" name="token" value="{token}"><input type="hidden" name="csrf" value="{sign_in_csrf}">
<button>Sign in</button></form>
</body></html>"""


async def post_forged(page: Page, site: str, form: str) -> tuple[int, str]:
    await page.goto(site + "/forged")
    async with page.expect_response(lambda r: r.request.method == "POST") as info:
        await page.locator(f"#{form} button").click()
    response = await info.value
    return response.status, await response.text()


async def test_the_console_forms_posted_from_other_sites_are_refused(
        browser: Browser, matrix_env: MatrixEnv, officer_of, bridge_log):
    visitor = await hooked_chat(matrix_env, officer_of, "a forged form must not hold this chat")
    try:
        page = await signed_in_page(browser, matrix_env)
        # The strongest forgery: the hostile page even knows this session's form token and a sign-in
        # form token (it could not, but then only the browser's own signals stop it).
        await page.goto(f"{matrix_env.public_url}/console/chats/{visitor.chat_id}")
        csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
        link = new_link(matrix_env)
        probe = await page.context.new_page()
        await probe.goto(link)
        sign_in_csrf = await probe.locator("form[action='/console/sign-in'] input[name=csrf]").get_attribute("value")
        await probe.close()
        token = re.search(r"token=([^&]+)", link).group(1)  # type: ignore[union-attr]
        forged = FORGED.format(bridge=matrix_env.public_url, chat=visitor.chat_id, csrf=csrf, token=html.escape(token),
                               sign_in_csrf=sign_in_csrf)

        port = matrix_env.public_url.rsplit(":", 1)[1]
        sites = [AgencySite(f"http://127.0.0.2:{free_port('127.0.0.2')}", matrix_env.public_url, "Prize", {"/forged": forged}),
                 # Same site (127.0.0.1), other origin: SameSite=Strict cookies do go, Sec-Fetch-Site says same-site.
                 AgencySite(f"http://127.0.0.1:{free_port('127.0.0.1')}", matrix_env.public_url, "Prize", {"/forged": forged})]
        assert all(not s.origin.endswith(":" + port) for s in sites)
        for site in sites:
            await site.start()
        try:
            for site in sites:
                status, text = await post_forged(page, site.origin, "hold")
                assert status in (401, 403), (site.origin, status)
                assert "Place under legal hold" not in text or status == 401
                assert not hold_of(matrix_env, visitor.chat_id), site.origin
                status, text = await post_forged(page, site.origin, "sign-in")
                assert status == 403, (site.origin, status)
            # The same-site page was refused for where it came from, with the session cookie present.
            status, text = await post_forged(page, sites[1].origin, "hold")
            assert status == 403 and "This form was not sent from the console." in text
        finally:
            for site in sites:
                await site.stop()

        # Nothing forged was spent: the link still signs the supervisor in, from the console's own page.
        await page.goto(link)
        await page.get_by_role("button", name="Sign in to the console").click()
        await expect(page).to_have_url(matrix_env.public_url + "/console/")
        await page.context.close()
    finally:
        await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/close", json={})
        await visitor.close()


async def test_a_supervisor_reviews_an_active_chat_from_the_console_in_chromium(
        browser: Browser, matrix_env: MatrixEnv, officer_of, bridge_log):
    """Monitoring from the console (issue 15): on an open chat's page the supervisor presses "Invite me to its
    room to review it"; their own Matrix client is invited by the chat's puppet, joins and reads the conversation
    from its start; the audit log names them and the browser's address. The chat stays with its officer."""
    from tests.support.bridge_db import claimed_by

    words = f"a review of this one please {uuid.uuid4().hex[:6]}"
    visitor = await hooked_chat(matrix_env, officer_of, words)
    reviewer = await officer_of("supervisor", auto_claim=False)
    try:
        holder = claimed_by(matrix_env.db_path, visitor.chat_id)
        page = await signed_in_page(browser, matrix_env)
        await page.goto(f"{matrix_env.public_url}/console/chats/{visitor.chat_id}")
        await page.get_by_role("button", name="Invite me to its room to review it").click()
        await expect(page.get_by_role("status")).to_contain_text("you are invited to chat")
        read = await reviewer.wait_message(lambda m: m.body == words, 90, "the citizen's words at the reviewer")
        assert read.room_id
        watched = [(a, o, origin) for a, o, origin in audit_rows(matrix_env, "chat.watch") if a == SUPERVISOR_ID]
        assert watched and watched[-1][1] == "ok" and watched[-1][2] == "127.0.0.1", watched
        assert claimed_by(matrix_env.db_path, visitor.chat_id) == holder
        await page.context.close()
    finally:
        await visitor.close()
