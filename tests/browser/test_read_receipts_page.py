"""Read receipts on the citizen's page (issue 15): "Read" under my message once the officer's client has
read it, and the officer's client sees that the page showed their reply."""
from __future__ import annotations

import uuid

import nio
from playwright.async_api import expect

from tests.support.waiting import until

from .conftest import CitizenPage, officer_ready, open_chat


async def test_the_citizen_sees_read_and_the_officer_sees_the_page_read_their_reply(citizen: CitizenPage, officer,
                                                                                    bridge_log):
    receipts: list[nio.Receipt] = []

    async def on_receipt(room: nio.MatrixRoom, event: nio.ReceiptEvent) -> None:
        receipts.extend(event.receipts)
    officer.client.add_ephemeral_callback(on_receipt, nio.ReceiptEvent)
    first = f"is anyone there {uuid.uuid4().hex[:6]}"
    got = await open_chat(citizen, officer, first)
    mine = citizen.page.locator("#log > li.msg--visitor").filter(has_text=first)
    await expect(mine.locator(".msg__state")).to_have_text("Delivered")
    await officer.client.room_read_markers(got.room_id, got.event_id, got.event_id)
    await expect(mine.locator(".msg__state")).to_have_text("Read")

    await officer_ready(officer, got.room_id)
    reply = f"yes, PC here {uuid.uuid4().hex[:6]}"
    event_id = await officer.send(got.room_id, reply)
    await expect(citizen.officer_message(reply)).to_have_count(1)
    await until(lambda: any(r.event_id == event_id and r.user_id == got.sender for r in receipts), 60,
                "the page's read receipt at the officer")
    await citizen.axe("a message marked read")
