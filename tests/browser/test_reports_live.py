"""Reports checked live (issue 15): a scripted set of real chats goes through the bridge and Synapse —
two claimed, answered and rated (one with an emergency word), one left before anyone answered — their
times then set to a past day (controlled times), and the console's figures and CSV, read by a supervisor
signed in in Chromium, are the values worked out here from the script."""
from __future__ import annotations

import calendar
import csv
import io
import sqlite3

from playwright.async_api import Browser, expect

from tests.conftest import SERVER, MatrixEnv
from tests.support.bridge_db import dispatch_room_of
from tests.support.visitor import Visitor

from .test_console_browser import signed_in_page

DAY = "2026-11-20"
T = calendar.timegm((2026, 11, 20, 9, 0, 0)) * 1000
S = 1000
# (created, answered, first officer message, closed) in ms, and the rating: the script.
SCRIPT = {"A": (T, T + 60 * S, T + 90 * S, T + 600 * S, 5),
          "B": (T + 3600 * S, T + 3780 * S, T + 3800 * S, T + 4500 * S, 3),
          "C": (T + 7200 * S, None, None, T + 7230 * S, None)}


async def test_the_consoles_figures_and_csv_are_the_scripts(browser: Browser, matrix_env: MatrixEnv, officer_of,
                                                            bridge_log):
    officer = await officer_of("hooked", auto_claim=False)     # claims A and B only: C is never taken
    dispatch = await dispatch_room_of(matrix_env.db_path, "hooked")
    chats: dict[str, Visitor] = {}
    try:
        for name in ("A", "B"):
            v = chats[name] = Visitor(matrix_env.public_url)
            number = (await v.create(topic="hooked"))["number"]
            await v.connect()
            first = f"chat {name} here"
            await v.send(first)
            await officer.notice(dispatch, number)
            await officer.claim(dispatch, number)
            got = await officer.wait_message(lambda m, t=first: m.body == t, 60, "the citizen's first message")
            await v.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active", 60, "active")
            await officer.client.joined_members(got.room_id)   # members loaded before the officer's first send
            await officer.send(got.room_id, f"PC here for {name}")
            await v.wait_frame(lambda f: f.get("body") == f"PC here for {name}", 60, "the officer's reply")
            if name == "B":
                await v.send("he has a knife")                       # an emergency word: counted
                await v.wait_frame(lambda f: f.get("type") == "status" and f.get("emergency") is True, 60)
        c = chats["C"] = Visitor(matrix_env.public_url)
        number = (await c.create(topic="hooked"))["number"]
        await officer.notice(dispatch, number)        # queued, then the citizen leaves before anyone answers
        for name, v in chats.items():
            assert (await v.http("POST", f"/api/v1/chats/{v.chat_id}/close", json={}))[0] == 200
            if SCRIPT[name][4] is not None:
                status, body = await v.http("POST", f"/api/v1/chats/{v.chat_id}/feedback",
                                            json={"rating": SCRIPT[name][4]})
                assert status in (200, 201), body

        # Controlled times: the real chats' moments moved to the script's, on a day of their own.
        conn = sqlite3.connect(matrix_env.db_path)
        try:
            with conn:
                for name, (created, answered, first, closed, _) in SCRIPT.items():
                    chat_id = chats[name].chat_id
                    conn.execute("UPDATE chats SET created_ts = ?, answered_ts = ?, closed_ts = ? WHERE id = ?",
                                 [created, answered, closed, chat_id])
                    conn.execute("UPDATE messages SET ts = ? WHERE chat_id = ? AND sender_kind = 'officer'",
                                 [first, chat_id])
        finally:
            conn.close()

        page = await signed_in_page(browser, matrix_env)
        query = f"from={DAY}&to={DAY}&agency=hooked"
        await page.goto(f"{matrix_env.public_url}/console/reports?{query}")
        officer_id = f"@hookofficer:{SERVER}"
        # Worked out from the script: waits 60 and 180 s, first responses 90 and 200 s, handling 540 and
        # 720 s (nearest-rank p50 / p90), 1 of 3 closed chats abandoned, ratings 5 and 3, one emergency.
        all_row = page.locator("table").first.locator("tbody tr").first
        await expect(all_row).to_contain_text("3")
        for text in ("1 (33%)", "1:00 / 3:00", "1:30 / 3:20", "9:00 / 12:00", "4.00 (2)"):
            await expect(all_row).to_contain_text(text)

        response = await page.request.get(f"{matrix_env.public_url}/console/reports.csv?{query}")
        assert response.ok, await response.text()
        rows = {(r["section"], r["group"], r["figure"]): r["value"]
                for r in csv.DictReader(io.StringIO(await response.text()))}
        expected_overall = {"chats": "3", "answered": "2", "closed": "3", "abandoned": "1", "abandoned_rate": "0.3333",
                            "wait_p50_s": "60", "wait_p90_s": "180", "first_response_p50_s": "90",
                            "first_response_p90_s": "200", "handling_p50_s": "540", "handling_p90_s": "720",
                            "transfers": "0", "emergencies": "1", "rated": "2", "feedback_average": "4"}
        assert {k: rows[("overall", "all", k)] for k in expected_overall} == expected_overall
        # Credited to who claimed them; a leading "@" is quoted so no spreadsheet takes the cell for a formula.
        assert rows[("officer", "'" + officer_id, "chats")] == "2"
        assert rows[("officer", "(not answered)", "chats")] == "1"
        assert [rows[("hour", f"{h:02d}:00", "chats")] for h in (8, 9, 10, 11, 12)] == ["0", "1", "1", "1", "0"]
        assert rows[("day", DAY, "chats")] == "3"
        await page.context.close()
    finally:
        for v in chats.values():
            await v.close()
