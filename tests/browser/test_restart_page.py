"""The citizen's page through a restart and a crash of the bridge, in the browser.

A restart (SIGTERM: an upgrade, a configuration change) closes every page's socket with 1001 "server
restarting"; the page then tries again every second, so the citizen is back about a second after the
bridge is. A socket lost any other way (a crash, the network) backs off as before: 1 s, 2 s, 4 s …
What the page says before each attempt is read from the page itself, as the citizen reads it.
"""
from __future__ import annotations

import asyncio
import uuid

from playwright.async_api import expect

from tests.support.waiting import until

from .conftest import CitizenPage, open_chat

# Every text the connection line shows, in order (installed once the chat is open).
LISTEN = """() => {
  const line = document.getElementById("connection");
  window.__said = [];
  new MutationObserver(() => { if (!line.hidden) { window.__said.push(line.textContent); } })
    .observe(line, {childList: true, characterData: true, subtree: true, attributes: true});
}"""


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


async def said(citizen: CitizenPage) -> list[str]:
    return await citizen.page.evaluate("() => window.__said.splice(0)")


async def announcements(citizen: CitizenPage, count: int) -> list[str]:
    """The first ``count`` "trying again in …" lines the page shows from now on."""
    heard: list[str] = []

    async def enough() -> bool:
        heard.extend(t for t in await said(citizen) if "Trying again" in t)     # one per attempt
        return len(heard) >= count
    await until(enough, 90, f"{count} retry announcements on the page")
    return heard[:count]


async def back_and_heard(citizen: CitizenPage, officer, room_id: str) -> None:
    """The page is connected again: the connection line is gone and a new line reaches the officer."""
    await expect(citizen.page.locator("#connection")).to_be_hidden(timeout=60_000)
    line = unique("Are you still there?")
    mine = await citizen.send(line)
    await expect(mine.locator(".msg__state")).to_have_text("Delivered", timeout=60_000)
    got = await officer.wait_message(lambda m: m.body == line, 60, "the citizen's line after the restart")
    assert got.room_id == room_id


async def test_after_a_restart_the_page_tries_every_second_after_a_crash_it_backs_off(
        citizen: CitizenPage, officer, matrix_env, bridge_log):
    bridge = matrix_env.bridge
    got = await open_chat(citizen, officer, unique("My bike was taken from the station"))
    await citizen.page.evaluate(LISTEN)
    try:
        # A restart: the bridge says 1001 and stays down until the page has tried four times.
        await asyncio.to_thread(bridge.stop)
        heard = await announcements(citizen, 4)
        assert all("in 1 second" in t for t in heard), heard
        await asyncio.to_thread(bridge.start)
        await back_and_heard(citizen, officer, got.room_id)

        # A crash: no 1001, so the page doubles its wait as for any lost connection.
        await said(citizen)
        await asyncio.to_thread(bridge.kill9)
        heard = await announcements(citizen, 2)
        assert "in 1 second" in heard[0] and "in 2 seconds" in heard[1], heard
        await asyncio.to_thread(bridge.start)
        await back_and_heard(citizen, officer, got.room_id)
    finally:
        if bridge.pid is None:
            await asyncio.to_thread(bridge.start)


async def test_the_quick_retries_after_a_restart_end_after_a_minute(citizen: CitizenPage):
    """A restart that outlasts RESTART_WINDOW_MS is an outage: from then on the page backs off as for any other,
    so a thousand pages do not knock every second for good. Asked of the page's own pacing function."""
    await citizen.open()
    plan = await citizen.page.evaluate("""async () => {
      const c = await import("/static/js/connection.js");
      const until = 1000 + c.RESTART_WINDOW_MS;
      let doubling = c.RETRY_MIN_MS, waits = [];
      for (const now of [1000, 2000, 30000, until - 1, until, until + 1000, until + 3000, until + 7000]) {
        const next = c.nextRetry(doubling, until, now, 0.5);
        waits.push(next.wait); doubling = next.doubling;
      }
      return {waits: waits, window: c.RESTART_WINDOW_MS, max: c.RETRY_MAX_MS,
              widest: c.nextRetry(1000, 0, 0, 0.999999).wait, narrowest: c.nextRetry(1000, 0, 0, 0).wait};
    }""")
    assert plan["window"] == 60_000
    assert plan["waits"] == [1000, 1000, 1000, 1000, 1000, 2000, 4000, 8000]
    assert 800 <= plan["narrowest"] and plan["widest"] < 1200
