"""A supervisor plays the citizen of a practice chat, in Debian's Chromium (issue 15, training).

The supervisor starts it from the console's practice page naming a trainee, opens the citizen's page from
the link the console shows (a new tab), and types as the citizen; the trainee, a real encrypted officer
client, is given the chat at once, sees it marked TRAINING and answers; the supervisor's tab shows the
answer. The chat's token travels only in the link's fragment: the page takes it out of the address bar,
and the bridge never sees it in a request line (its log does not hold it).
"""
from __future__ import annotations

import re
import sqlite3
import uuid

from playwright.async_api import Browser, expect

from tests.conftest import SERVER, MatrixEnv
from tests.integration.test_console_live import audit_rows
from tests.support.waiting import until

from .conftest import RECORD_CSP, CitizenPage, check_and_close
from .test_console_browser import SUPERVISOR_ID, signed_in_page


def training_of(env: MatrixEnv, number: int) -> tuple[str, str, str | None] | None:
    conn = sqlite3.connect(f"file:{env.db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT training, room_id, claimed_by FROM chats WHERE number = ?", [number]).fetchone()
    finally:
        conn.close()


async def test_a_supervisor_plays_the_citizen_of_a_practice_chat_from_the_console(
        browser: Browser, matrix_env: MatrixEnv, officer_of, bridge_log):
    trainee = await officer_of("hooked")
    console = await signed_in_page(browser, matrix_env)
    await console.context.add_init_script(RECORD_CSP)
    await console.get_by_role("link", name="Practice", exact=True).click()
    await expect(console.get_by_role("heading", name="Practice chat")).to_be_visible()

    # Someone who is not an officer of the agency cannot be made its trainee: refused, said, recorded.
    await console.get_by_label("Who plays the citizen").select_option(label="You (you type as the citizen)")
    await console.get_by_label("Trainee (Matrix ID, optional)").fill(f"@intruder:{SERVER}")
    await console.get_by_role("button", name="Start the practice chat").click()
    await expect(console.get_by_role("alert")).to_contain_text("is not an officer of")
    assert (SUPERVISOR_ID, "refused") in [(a, o) for a, o, _ in audit_rows(matrix_env, "chat.practice")]

    await console.get_by_label("Who plays the citizen").select_option(label="You (you type as the citizen)")
    await console.get_by_label("Trainee (Matrix ID, optional)").fill(trainee.client.user_id)
    await console.get_by_role("button", name="Start the practice chat").click()
    started = console.get_by_role("status")
    await expect(started).to_contain_text("has started")
    number = int(re.search(r"Practice chat (\d+)", await started.inner_text())[1])
    training, room_id, holder = training_of(matrix_env, number)
    assert training == "live" and holder == trainee.client.user_id
    practice = [(a, o, origin) for a, o, origin in audit_rows(matrix_env, "chat.practice") if o == "ok"]
    assert practice and practice[-1][0] == SUPERVISOR_ID and practice[-1][2]     # who, and from where

    async with console.context.expect_page() as opened:
        await console.get_by_role("link", name="Open the citizen's page for this chat").click()
    tab = await opened.value
    citizen = CitizenPage(console.context, tab, matrix_env)
    try:
        await expect(tab.locator("#chat")).to_be_visible()
        await expect(tab.locator("#chat-number")).to_contain_text(str(number))
        assert "#" not in tab.url and "practice" not in tab.url                    # the token left the address bar
        token = (await citizen.stored_session())["token"]

        said = f"my bike was taken from the station {uuid.uuid4().hex[:6]}"
        await expect(await citizen.send(said)).to_be_visible()
        room_id = await until(lambda: training_of(matrix_env, number)[1], 60, "the practice chat's room")
        heard = await trainee.wait_message(lambda m: m.room_id == room_id and m.body == said, 90,
                                           "the supervisor's words at the trainee")
        assert heard.sender.startswith("@")
        await trainee.wait_joined(room_id, 60)
        assert trainee.client.rooms[room_id].display_name.startswith("TRAINING")
        answer = f"When did you last see it? {uuid.uuid4().hex[:6]}"
        await trainee.send(room_id, answer)
        await expect(citizen.officer_message(answer)).to_be_visible(timeout=60_000)
        assert token not in matrix_env.bridge.log_path.read_text(errors="replace")
    finally:
        await check_and_close(citizen)
