"""The bridge behind Debian's nginx running config/nginx-precinct.conf, the sample operators install (issue 12).

Chromium talks only to nginx (https with a throw-away certificate, on [::1]); nginx to the bridge (from
127.0.0.1, its one trusted proxy).  Through it: the citizen journey with the WebSocket, a 9 MB attachment
each way with its bytes checked, the white-label stylesheet and logo, the widget on the agency's own origin,
and a supervisor's console sign-in pressing the button as a person does.  The bridge records the browser's
own address (::1), which only the proxy's forwarded header can tell it; a client's forged X-Forwarded-For
is not believed, through nginx or straight to the bridge.  Nothing here sets a browser header.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import PASSWORD, SERVER
from tests.support import proxied
from tests.support.agency_site import AgencySite
from tests.support.officer import OfficerPool
from tests.support.visitor import Visitor
from tests.support.waiting import until

from .conftest import RECORD_CSP, WIDE, officer_ready

ROOT = Path(__file__).parents[2]
NINE_MB = 9 * 1000 * 1000


@pytest.fixture
async def proxied_officer(proxied_env: proxied.ProxiedEnv, matrix_env, tmp_path: Path):
    pool = OfficerPool(tmp_path, PASSWORD)
    try:
        yield await pool.start(matrix_env.synapse.url, f"@{proxied.OFFICER}:{SERVER}", "officer-proxied")
    finally:
        await pool.stop_all()


async def https_context(browser: Browser):
    """A fresh context that accepts this run's self-signed certificate (nothing else is changed)."""
    context = await browser.new_context(viewport=WIDE, locale="en-GB", ignore_https_errors=True,
                                        accept_downloads=True)
    await context.add_init_script(RECORD_CSP)
    return context


def rows(env: proxied.ProxiedEnv, sql: str, args: list | tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{env.db_path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, list(args)).fetchall()
    finally:
        conn.close()


def source_is(env: proxied.ProxiedEnv, chat_id: str, address: str) -> bool:
    """The chat's recorded source (a salted hash, never the address) is that of ``address``."""
    found = rows(env, "SELECT s.salt, c.hash FROM chat_sources c JOIN source_salts s ON s.day = c.day "
                      "WHERE c.chat_id = ?", [chat_id])
    assert found, f"no source recorded for chat {chat_id}"
    salt, digest = found[0]
    return hmac.new(bytes.fromhex(salt), address.encode(), hashlib.sha256).hexdigest() == digest


async def test_citizen_journey_and_9_mb_attachments_both_ways_through_nginx(
        browser: Browser, proxied_env: proxied.ProxiedEnv, proxied_officer):
    env, officer = proxied_env, proxied_officer
    context = await https_context(browser)
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        responses: dict[str, int] = {}
        page.on("response", lambda r: responses.__setitem__(r.url.split("?")[0], r.status))
        await page.goto(env.public_url + "/chat")
        await expect(page.locator("html[data-ready='1']")).to_have_count(1)
        # The white-label stylesheet and logo come through the proxy.
        await expect(page.locator("#topic option")).to_have_count(1)
        assert responses.get(env.public_url + "/site.css") == 200, responses
        logo = page.locator("#logo")
        await expect(logo).to_have_attribute("src", re.compile(r"/site/logo$"))
        await expect(logo).to_be_visible()
        await until(lambda: logo.evaluate("img => img.complete && img.naturalWidth === 1"), 30, "the logo drawn")
        async with aiohttp.ClientSession() as http:
            async with http.get(env.public_url + "/site/logo", ssl=False) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "image/png"
            # One of each security header: the proxy adds only HSTS, the bridge the rest.
            async with http.get(env.public_url + "/chat", ssl=False) as r:
                assert r.status == 200
                for name in ("Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy",
                             "Content-Security-Policy"):
                    assert len(r.headers.getall(name, [])) == 1, (name, r.headers.getall(name, []))
            async with http.get(env.public_url + "/health", ssl=False) as r:
                assert r.status == 404          # not public
            # Plain http is sent to https.
            async with http.get(f"http://[{proxied.HOST}]:{env.nginx.http_port}/chat", allow_redirects=False) as r:
                assert r.status == 301 and r.headers["Location"].startswith("https://"), r.headers

        # Start a chat; the officer answers; the citizen sees it (over the proxied WebSocket).
        await page.locator("#start-button").click()
        await expect(page.locator("#chat")).to_be_visible()
        first = f"My bicycle was taken {uuid.uuid4().hex[:6]}"
        await page.locator("#message").fill(first)
        await page.locator("#message").press("Enter")
        await expect(page.locator("#log > li.msg--visitor .msg__state").first).to_have_text("Delivered")
        got = await officer.wait_message(lambda m: m.body == first, 60, "the citizen's message via nginx")
        await officer_ready(officer, got.room_id)
        answer = f"We are on it {uuid.uuid4().hex[:6]}"
        await officer.send(got.room_id, answer)
        await expect(page.locator("#log > li.msg--officer .msg__body", has_text=answer)).to_be_visible()
        chat_id = (await page.evaluate("() => JSON.parse(sessionStorage.getItem('precinct.chat.v1'))"))["chat_id"]
        # The bridge recorded the browser's address as nginx forwarded it, not nginx's own.
        assert source_is(env, chat_id, "::1") and not source_is(env, chat_id, proxied.PROXY)

        # 9 MB from the citizen to the officer, past the 64 KiB the sample used to allow.
        pdf = b"%PDF-1.4\n" + os.urandom(NINE_MB - 9)
        await page.locator("#attach").set_input_files(files=[{"name": "statement.pdf", "mimeType": "application/pdf",
                                                              "buffer": pdf}])
        mine = page.locator("#log > li.msg--visitor").filter(has=page.locator(".msg__body", has_text="statement.pdf"))
        await expect(mine.locator(":scope > .msg__state")).to_have_text("Delivered", timeout=120_000)
        event = await until(lambda: next((e for r, e in officer.media if r == got.room_id), None), 120,
                            "the citizen's 9 MB file at the officer")
        assert hashlib.sha256(await officer.download_decrypted(event)).hexdigest() == hashlib.sha256(pdf).hexdigest()

        # 9 MB from the officer to the citizen, downloaded in the page through nginx.
        back = b"%PDF-1.4\n" + os.urandom(NINE_MB - 9)
        await officer.send_encrypted_file(got.room_id, back, "report.pdf", "application/pdf")
        link = page.locator("#log > li.msg--officer").get_by_role("link", name="Download report.pdf")
        await expect(link).to_be_visible(timeout=120_000)
        async with page.expect_download(timeout=120_000) as download:
            await link.click()
        data = (await (await download.value).path()).read_bytes()
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(back).hexdigest()

        assert not errors, errors
        assert not await page.evaluate("() => window.__csp"), await page.evaluate("() => window.__csp")
    finally:
        await context.close()


async def test_widget_on_the_agencys_origin_through_nginx(browser: Browser, proxied_env: proxied.ProxiedEnv,
                                                         proxied_officer):
    env, officer = proxied_env, proxied_officer
    site = AgencySite(env.agency_site, env.public_url)
    await site.start()
    context = await https_context(browser)
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(site.origin + "/")
        launcher = page.get_by_role("button", name="Chat with the police")
        await launcher.click()
        frame = page.frame_locator("#precinct-frame")
        await expect(frame.locator("html")).to_have_class(re.compile("is-embedded"))
        await frame.locator("#start-button").click()
        await expect(frame.locator("#chat")).to_be_visible()
        first = f"Hello from the agency's site via nginx {uuid.uuid4().hex[:6]}"
        await frame.locator("#message").fill(first)
        await frame.locator("#message").press("Enter")
        await expect(frame.locator("#log > li.msg--visitor .msg__state")).to_have_text("Delivered")
        got = await officer.wait_message(lambda m: m.body == first, 60, "the widget citizen's message via nginx")
        await officer_ready(officer, got.room_id)
        answer = f"Hello, widget {uuid.uuid4().hex[:6]}"
        await officer.send(got.room_id, answer)
        await expect(frame.locator("#log > li.msg--officer .msg__body", has_text=answer)).to_be_visible()
        assert not errors, errors
    finally:
        await context.close()
        await site.stop()


async def test_console_sign_in_through_nginx(browser: Browser, proxied_env: proxied.ProxiedEnv):
    env = proxied_env
    supervisor = f"@{proxied.SUPERVISOR}:{SERVER}"
    link = subprocess.run([sys.executable, "-m", "bridge", "console", "link", supervisor, "-c", str(env.config_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert link.returncode == 0, link.stderr
    url = link.stdout.strip()
    assert url.startswith(env.public_url + "/console/"), url
    context = await https_context(browser)
    try:
        page = await context.new_page()
        shown = await page.goto(url)
        assert shown is not None and shown.status == 200
        # The console's own referrer policy (its forms need their Origin), once, not contradicted by the proxy's.
        assert await shown.header_values("referrer-policy") == ["same-origin"]
        assert len(await shown.header_values("strict-transport-security")) == 1
        await page.get_by_role("button", name="Sign in to the console").click()
        await expect(page).to_have_url(env.public_url + "/console/")
        await expect(page.get_by_text("Live queue and active chats")).to_be_visible()
        cookie = next(c for c in await context.cookies() if c["path"] == "/console" and c["httpOnly"])
        assert cookie["secure"], cookie
        # Audited with the browser's own address, as nginx forwarded it.
        signed = rows(env, "SELECT actor, outcome, origin FROM audit_log WHERE action = 'console.sign_in'")
        assert (supervisor, "ok", "::1") in signed, signed
    finally:
        await context.close()


async def test_a_forged_forwarded_for_is_not_believed(proxied_env: proxied.ProxiedEnv):
    env = proxied_env
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
    # Through nginx: the proxy replaces the header with the address it saw.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        async with http.post(env.public_url + "/api/v1/chats", json={"topic": "general"}, headers=forged) as r:
            assert r.status == 201, await r.text()
            through = (await r.json())["chat_id"]
    assert source_is(env, through, "::1") and not source_is(env, through, "203.0.113.9")
    # Straight to the bridge from an address that is not a trusted proxy: the header is ignored.
    visitor = Visitor(env.direct_url, source="127.0.0.7")
    try:
        async with visitor.session.post(env.direct_url + "/api/v1/chats", json={"topic": "general"},
                                        headers=forged) as r:
            assert r.status == 201, await r.text()
            direct = (await r.json())["chat_id"]
    finally:
        await visitor.session.close()
    assert source_is(env, direct, "127.0.0.7") and not source_is(env, direct, "203.0.113.9")
