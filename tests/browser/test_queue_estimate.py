"""The queue's estimate as a number (issue 15): once enough chats on a topic were answered, a new citizen
waiting on it reads "about N minutes", the median of those real waits, on the page."""
from __future__ import annotations

import sqlite3

import pytest
from playwright.async_api import expect

from bridge.chats.queue import MIN_SAMPLES
from tests.support.bridge_db import dispatch_room_of, rows
from tests.support.waiting import until

from .conftest import CitizenPage

WAIT_MS = 180_000          # each answered chat is made to have waited three minutes (controlled times)


@pytest.mark.agency(label="Estimates desk")
async def test_a_waiting_citizen_reads_the_median_of_real_waits_in_minutes(citizen: CitizenPage, matrix_env, agency,
                                                                          officer_of, visitors, bridge_log):
    """In an agency of its own: its waits are the only ones on the topic and the citizen is alone in its queue."""
    officer = await officer_of(agency.officers[0], auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, agency.id)
    answered = []
    for i in range(MIN_SAMPLES):                        # real chats, claimed and answered through the bridge
        v = visitors()
        number = (await v.create(topic=agency.topic))["number"]
        await v.connect()
        await v.send(f"estimate sample {i}")
        await officer.notice(dispatch, number)
        await officer.claim(dispatch, number)
        await v.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active", 60,
                           "the officer joined")
        await v.http("POST", f"/api/v1/chats/{v.chat_id}/close", json={})
        answered.append(v.chat_id)
    # Controlled times: each of them waited exactly three minutes (the bridge reads waits from its store).
    conn = sqlite3.connect(matrix_env.db_path)
    try:
        with conn:
            conn.executemany("UPDATE chats SET created_ts = answered_ts - ? WHERE id = ?",
                             [(WAIT_MS, chat_id) for chat_id in answered])
    finally:
        conn.close()
    await until(lambda: rows(matrix_env.db_path, "SELECT COUNT(*) FROM chats WHERE topic = ? AND answered_ts - "
                             "created_ts = ?", [agency.topic, WAIT_MS])[0][0] == MIN_SAMPLES, 10, "the waits")

    await citizen.open()
    await citizen.start("Estimates desk")
    queue = citizen.page.locator("#queue")
    await expect(queue).to_contain_text("Your place in the queue: 1.")
    await expect(queue).to_contain_text("Estimated wait: about 3 minutes.")
    await citizen.axe("waiting, with an estimate")
