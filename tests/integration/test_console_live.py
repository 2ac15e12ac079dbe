"""The supervisor console on the real bridge: served under /console with its own CSP; links for supervisors only."""
from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import MatrixEnv

ROOT = Path(__file__).parents[2]


def console_link(env: MatrixEnv, user: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", "console", "link", user, "-c", str(env.config_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def audit_rows(env: MatrixEnv, action: str) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{env.dir / 'precinct.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT actor, outcome, origin FROM audit_log WHERE action = ? ORDER BY idx",
                            [action]).fetchall()
    finally:
        conn.close()


async def test_console_is_served_strictly_and_a_non_supervisor_gets_no_link(matrix_env: MatrixEnv, bridge_log):
    async with aiohttp.ClientSession() as s, s.get(matrix_env.public_url + "/console/") as r:
        text = await r.text()
        assert r.status == 401 and "!console" in text
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert "<script" not in text

    officer = matrix_env.officer_id("central")                  # an officer, not a supervisor
    result = console_link(matrix_env, officer)
    assert result.returncode == 1 and "not a supervisor" in result.stderr and "http" not in result.stdout
    assert (officer, "refused", "cli") in audit_rows(matrix_env, "console.link")


async def test_a_supervisor_signs_in_once_and_sees_a_real_chat(matrix_env: MatrixEnv, officer_of, bridge_log):
    from urllib.parse import parse_qs, urlsplit

    from tests.conftest import SERVER, SUPERVISOR
    from tests.integration.test_conversation import open_chat
    from tests.support.visitor import Visitor

    supervisor = f"@{SUPERVISOR}:{SERVER}"
    officer = await officer_of("hooked")
    visitor = Visitor(matrix_env.public_url)
    try:
        got = await open_chat(visitor, officer, topic="hooked")
        secret_words = "my neighbour's shed was broken into"
        await visitor.send(secret_words)
        await officer.wait_message(lambda m: m.body == secret_words, timeout=60)

        result = console_link(matrix_env, supervisor)
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert url.startswith(matrix_env.public_url + "/console/sign-in?token=")
        token = parse_qs(urlsplit(url).query)["token"][0]

        jar = aiohttp.CookieJar(unsafe=True)             # 127.0.0.1 is an IP address; the cookie is ours
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            async with s.get(url) as r:
                page = await r.text()
                assert r.status == 200 and "Sign in to the console" in page
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
            async with s.post(matrix_env.public_url + "/console/sign-in", data={"token": token, "csrf": csrf},
                              allow_redirects=False) as r:
                assert r.status == 303
                cookie = r.cookies["precinct_console"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
            async with s.get(matrix_env.public_url + "/console/") as r:
                live = await r.text()
                assert r.status == 200 and supervisor in live and "Hooked Police" in live
                assert "Central Police" not in live                      # only the agency they supervise
            async with s.get(matrix_env.public_url + "/console/search",
                             params={"q": "shed was broken"}) as r:
                found = await r.text()
                assert r.status == 200 and "1 result" in found
            async with s.get(f"{matrix_env.public_url}/console/chats/{visitor.chat_id}") as r:
                assert r.status == 200 and secret_words.replace("'", "&#x27;") in await r.text()

        assert await sign_in_with(matrix_env, url) == 403               # the same link, a second time
        assert [o for a, o, _ in audit_rows(matrix_env, "console.sign_in") if a == supervisor][-2:] == ["ok", "failed"]
        assert any(a == supervisor for a, _, _ in audit_rows(matrix_env, "transcript.viewed"))
        assert got.room_id
    finally:
        await visitor.close()


async def test_the_daily_summary_reaches_the_supervisors_room(matrix_env: MatrixEnv, bridge_log):
    from tests.conftest import PASSWORD, SERVER, SUPERVISOR
    from tests.support import supervisor_room
    from tests.support.waiting import until

    hs = matrix_env.synapse.url
    room = matrix_env.config["reports"]["summary_rooms"]["hooked"]
    token = supervisor_room.login(hs, SUPERVISOR, PASSWORD)
    posted = await until(lambda: supervisor_room.notices(hs, token, room, f"@precinct:{SERVER}"), 60,
                         "the daily summary in the supervisors' room")
    assert len(posted) == 1 and posted[0].startswith("Daily summary for Hooked Police, ")
    assert "/console/reports?from=" in posted[0] and "agency=hooked" in posted[0]
    assert ("bridge", "ok", room) in audit_rows(matrix_env, "report.summary_posted")


async def sign_in_with(env: MatrixEnv, url: str) -> int:
    from urllib.parse import parse_qs, urlsplit
    token = parse_qs(urlsplit(url).query)["token"][0]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(url) as r:                   # the page sets the sign-in form's CSRF cookie
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await r.text()).group(1)  # type: ignore[union-attr]
        async with s.post(env.public_url + "/console/sign-in", data={"token": token, "csrf": csrf},
                          allow_redirects=False) as r:
            assert r.status == 303 or "precinct_console" not in r.cookies
            return r.status


async def test_console_command_to_the_bot_gives_a_supervisor_one_link_and_refuses_an_officer(
        matrix_env: MatrixEnv, officer_of, bridge_log):
    import re

    bot = "@precinct:localhost"
    supervisor = await officer_of("supervisor", auto_claim=False)
    direct = await supervisor.create_room_with(bot)
    greeting = await supervisor.wait_message(lambda m: m.room_id == direct and m.body.startswith("Commands"), 60,
                                             "the bot's greeting in a direct chat")
    assert "!console" in greeting.body
    await supervisor.send(direct, "!console")
    reply = await supervisor.wait_message(lambda m: m.room_id == direct and "/console/sign-in?token=" in m.body, 60,
                                          "the sign-in link in the direct chat")
    assert reply.sender == bot and reply.source.get("type") == "m.room.message"   # decrypted by the supervisor
    url = re.search(r"(http\S+/console/sign-in\?token=\S+)", reply.body).group(1)  # type: ignore[union-attr]
    assert await sign_in_with(matrix_env, url) == 303
    assert await sign_in_with(matrix_env, url) == 403                            # single use

    officer = await officer_of("hooked", auto_claim=False)
    other = await officer.create_room_with(bot)
    await officer.wait_message(lambda m: m.room_id == other and m.body.startswith("Commands"), 60, "greeting")
    await officer.send(other, "!console")
    refusal = await officer.wait_message(lambda m: m.room_id == other and "not a supervisor" in m.body, 60,
                                         "the refusal")
    assert "http" not in refusal.body
    assert (matrix_env.officer_id("hooked"), "refused", other) in audit_rows(matrix_env, "console.link")
    assert (matrix_env.officer_id("supervisor"), "ok", direct) in audit_rows(matrix_env, "console.link")
