"""Attachments through the page: the citizen's photo decrypts at the officer with the same bytes,
and the officer's PDF and photo reach the citizen (fetched with the chat's token, never by a bare URL)."""
from __future__ import annotations

import os
import uuid

from playwright.async_api import expect

from tests.conftest import ATTACHMENT_LIMIT
from tests.integration.test_attachments import tiny_png
from tests.support.waiting import until

from .conftest import CitizenPage, open_chat


async def test_attachments_both_ways_in_the_page(citizen: CitizenPage, officer, bridge_log):
    page = citizen.page
    got = await open_chat(citizen, officer, f"I have a photo of it {uuid.uuid4().hex[:6]}")

    png = tiny_png()
    await page.locator("#attach").set_input_files(files=[{"name": "bike.png", "mimeType": "image/png", "buffer": png}])
    mine = citizen.own("bike.png")
    await expect(mine.locator(":scope > .msg__state")).to_have_text("Delivered")
    await expect(mine.locator("img.msg__image")).to_have_attribute("alt", "bike.png")
    event = await until(lambda: next((e for r, e in officer.media if r == got.room_id), None), 60,
                        "the citizen's photo at the officer")
    assert event.source["content"]["msgtype"] == "m.image"
    assert await officer.download_decrypted(event) == png

    # A type the bridge does not take is refused by content, and the page says so on that message.
    await page.locator("#attach").set_input_files(
        files=[{"name": "holiday.png", "mimeType": "image/png", "buffer": b"MZ\x90\x00 a program"}])
    await expect(citizen.own("holiday.png").locator(":scope > .msg__state")).to_have_text(
        "Not sent: only photos (JPEG, PNG, WebP) and PDF files can be sent.")

    # Over the configured size: said on the message at once, before any upload.
    uploads: list[str] = []
    page.on("request", lambda r: uploads.append(r.url) if "/attachments?" in r.url else None)
    big = b"%PDF-1.4\n" + bytes(ATTACHMENT_LIMIT)
    await page.locator("#attach").set_input_files(files=[{"name": "scan.pdf", "mimeType": "application/pdf",
                                                          "buffer": big}])
    await expect(citizen.own("scan.pdf").locator(":scope > .msg__state")).to_have_text(
        "Not sent: the file is too large.")
    assert not uploads, uploads

    pdf = b"%PDF-1.4\n% a form to fill in\n" + os.urandom(2048)
    await officer.send_encrypted_file(got.room_id, pdf, "form.pdf", "application/pdf")
    theirs = citizen.officer_message("form.pdf")
    link = theirs.get_by_role("link", name="Download form.pdf")
    await expect(link).to_be_visible()
    async with page.expect_download() as download:
        await link.click()
    assert (await download.value).suggested_filename == "form.pdf"
    assert (await (await download.value).path()).read_bytes() == pdf

    await officer.send_encrypted_file(got.room_id, png, "map.png", "image/png")
    picture = citizen.officer_message("map.png").locator("img.msg__image")
    await expect(picture).to_be_visible()
    assert await picture.evaluate("img => img.complete && img.naturalWidth") == 1
    await expect(page.locator("#log a[href^='http'], #log img[src^='http']")).to_have_count(0)
