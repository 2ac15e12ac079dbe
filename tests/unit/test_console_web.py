"""The console over HTTP (real aiohttp app, real store and records): sign-in, cookies, CSP, scope, audit."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.console.auth import ConsoleAuth
from bridge.client_address import ClientAddresses
from bridge.console.reports_web import ReportsWeb
from bridge.console.web import COOKIE, ConsoleWeb
from bridge.limits import Limit, Rate
from bridge.records import Records
from bridge.records.retention import Retention
from bridge.store import Store
from bridge.web.server import public_app
from bridge.web.visitor_api import VisitorApi
from tests.support.configs import example_config

SERGEANT, OUTSIDER = "@sergeant:police.example", "@inspector:elsewhere.example"


class Env:
    def __init__(self, tmp_path, sign_in_limit: Limit | None = None) -> None:  # type: ignore[no-untyped-def]
        self.config = example_config(tmp_path)
        self.store = Store.open(tmp_path / "precinct.db")
        self.records = Records.open(self.config, self.store)
        self.clock = [1_800_000_000.0]
        supervisors = {SERGEANT: ("central",), OUTSIDER: ("elsewhere",)}
        self.auth = ConsoleAuth(self.store, self.records, lambda u: supervisors.get(u, ()),
                                self.config.get("web.public_url"), clock=lambda: self.clock[0],
                                sign_in_limit=sign_in_limit)
        addresses = ClientAddresses(self.config.get("web.trusted_proxies"))
        self.console = ConsoleWeb(self.config, self.store, self.auth, self.records,
                                  Retention(self.config, self.store, self.records), "@precinct:police.example",
                                  addresses, sections=[ReportsWeb(self.config, self.store, self.records, addresses)])

    def chat(self, agency: str = "central", n: int = 1):  # type: ignore[no-untyped-def]
        chat = self.store.chats.create(f"c{agency}{n}", f"h{agency}{n}", "general", agency, "Sam", "en")
        self.records.chat_event(chat.id, "queued", None, number=chat.number, agency=agency, topic="general")
        self.records.chat_event(chat.id, "message.visitor", "visitor", seq=2, body=f"my bicycle was stolen {n}")
        return chat

    def audits(self, action: str) -> list[dict]:
        return [e for e in self.records.trail.entries() if e["action"] == action]


async def serve(env: Env) -> Env:
    visitor_api = VisitorApi(env.config, env.store, chats=None)  # type: ignore[arg-type]
    env.client = TestClient(TestServer(public_app(visitor_api, env.console.app(), durable=env.store.db.durable)))
    await env.client.start_server()
    return env


@pytest.fixture
async def env(tmp_path):
    env = await serve(Env(tmp_path))
    yield env
    await env.client.close()
    env.store.close()


async def sign_in(env: Env, user: str = SERGEANT) -> str:
    url = env.auth.issue_sign_in_link(user, "test")
    token = parse_qs(urlsplit(url).query)["token"][0]
    page = await env.client.get(f"/console/sign-in?token={token}")
    html = await page.text()
    assert page.status == 200 and "<button>Sign in" in html
    assert env.auth.session(None) is None and not env.audits("console.sign_in")    # showing the page spends nothing
    r = await env.client.post("/console/sign-in", data={"token": token, "csrf": csrf_of(html)},
                              allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/"
    cookie = r.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"]                            # http in the example config; https sets Secure
    return token


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]


async def test_sign_in_is_single_use_and_pages_are_strict(env):
    token = await sign_in(env)
    r = await env.client.get("/console/")
    text = await r.text()
    assert r.status == 200 and "Live queue and active chats" in text and SERGEANT in text
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["Cache-Control"] == "no-store" and "<script" not in text
    css = await env.client.get("/console/console.css")
    assert css.status == 200 and css.content_type == "text/css"

    page = await (await env.client.get(f"/console/sign-in?token={token}")).text()
    again = await env.client.post("/console/sign-in", data={"token": token, "csrf": csrf_of(page)},
                                  allow_redirects=False)
    assert again.status == 403 and "expired or was already used" in await again.text()
    outcomes = [(a["actor"], a["outcome"]) for a in env.audits("console.sign_in")]
    assert outcomes == [(SERGEANT, "ok"), (SERGEANT, "failed")]


async def test_a_sign_in_form_not_from_our_sign_in_page_is_refused_and_spends_nothing(env):
    url = env.auth.issue_sign_in_link(SERGEANT, "test")
    token = parse_qs(urlsplit(url).query)["token"][0]
    # Posted straight at us (as another site's form would be: it has no sign-in cookie), then with a
    # token that is not the one our page gave: both refused, the link still unspent.
    blind = await env.client.post("/console/sign-in", data={"token": token}, allow_redirects=False)
    assert blind.status == 403 and "Open your sign-in link again" in await blind.text()
    page = await env.client.get(f"/console/sign-in?token={token}")
    assert page.headers["Referrer-Policy"] == "same-origin"
    wrong = await env.client.post("/console/sign-in", data={"token": token, "csrf": "0" * 64},
                                  allow_redirects=False)
    assert wrong.status == 403 and COOKIE not in wrong.cookies
    assert not env.audits("console.sign_in")
    right = await env.client.post("/console/sign-in", data={"token": token, "csrf": csrf_of(await page.text())},
                                  allow_redirects=False)
    assert right.status == 303 and COOKIE in right.cookies


async def test_signed_out_visitors_see_how_to_sign_in_and_nothing_else(env):
    env.chat()
    for path in ("/console/", "/console/search?q=bicycle", "/console/chats/ccentral1", "/console/feedback",
                 "/console/key", "/console/chats/ccentral1/export?format=json"):
        r = await env.client.get(path)
        text = await r.text()
        assert r.status == 401 and "!console" in text and "bicycle" not in text, path
    assert (await env.client.get("/console", allow_redirects=False)).headers["Location"] == "/console/"


async def test_idle_session_ends_after_thirty_minutes(env):
    await sign_in(env)
    env.clock[0] += 29 * 60
    assert (await env.client.get("/console/")).status == 200
    env.clock[0] += 30 * 60 + 1
    r = await env.client.get("/console/")
    assert r.status == 401 and "session has ended" in await r.text()


async def test_live_view_search_transcript_export_and_hold_for_own_agency_only(env):
    mine = env.chat("central", 1)
    theirs = env.chat("elsewhere", 2)
    env.store.feedback.add(mine.id, 4, "Quick and kind")
    await sign_in(env)

    urgent = env.chat("central", 3)
    env.store.db.execute("UPDATE chats SET priority = 1, emergency = 1, claimed_by = ? WHERE id = ?",
                         ["@officer1:police.example", urgent.id])
    live = await (await env.client.get("/console/")).text()
    assert f"Chat {mine.number}" in live and f"Chat {theirs.number}" not in live and "2 waiting" in live
    assert live.index(f"Chat {urgent.number}") < live.index(f"Chat {mine.number}")     # served first
    assert "Emergency" in live and "@officer1:police.example" in live

    found = await (await env.client.get("/console/search", params={"q": "bicycle stolen"})).text()
    assert f"Chat {mine.number}" in found and f"Chat {theirs.number}" not in found and "[bicycle]" in found
    assert env.audits("transcript.searched")[-1]["actor"] == SERGEANT
    bad = await (await env.client.get("/console/search", params={"q": "x", "from": "29/11/2026"})).text()
    assert "YYYY-MM-DD" in bad

    view = await env.client.get(f"/console/chats/{mine.id}")
    text = await view.text()
    assert view.status == 200 and "my bicycle was stolen 1" in text and "Quick and kind" in text
    assert [a["target"] for a in env.audits("transcript.viewed")] == [mine.id]

    exported = await env.client.get(f"/console/chats/{mine.id}/export", params={"format": "json"})
    assert exported.status == 200 and "attachment" in exported.headers["Content-Disposition"]
    assert (await exported.json())["chat"]["id"] == mine.id
    assert [a["target"] for a in env.audits("transcript.exported")] == [mine.id]
    assert (await env.client.get(f"/console/chats/{mine.id}/export", params={"format": "exe"})).status == 400

    other = await env.client.get(f"/console/chats/{theirs.id}")
    assert other.status == 404 and "stolen 2" not in await other.text()
    refused = [a for a in env.audits("transcript.viewed") if a["outcome"] == "refused"]
    assert [(a["actor"], a["target"]) for a in refused] == [(SERGEANT, theirs.id)]

    csrf = csrf_of(text)
    held = await env.client.post(f"/console/chats/{mine.id}/hold", data={"csrf": csrf, "action": "set",
                                                                         "reason": "court case 17"},
                                 allow_redirects=False)
    assert held.status == 303
    hold = env.store.legal_holds.get(mine.id)
    assert hold is not None and hold.reason == "court case 17" and hold.actor == SERGEANT
    assert "court case 17" in await (await env.client.get(f"/console/chats/{mine.id}")).text()
    forged = await env.client.post(f"/console/chats/{mine.id}/hold", data={"csrf": "0" * 64, "action": "lift"})
    assert forged.status == 403 and env.store.legal_holds.get(mine.id) is not None
    lifted = await env.client.post(f"/console/chats/{mine.id}/hold", data={"csrf": csrf, "action": "lift"},
                                   allow_redirects=False)
    assert lifted.status == 303 and env.store.legal_holds.get(mine.id) is None
    assert [(a["actor"], a["outcome"]) for a in env.audits("legal_hold.set")] == [(SERGEANT, "ok")]
    assert [(a["actor"], a["outcome"]) for a in env.audits("legal_hold.lifted")] == [(SERGEANT, "ok")]
    theirs_hold = await env.client.post(f"/console/chats/{theirs.id}/hold", data={"csrf": csrf, "action": "set"})
    assert theirs_hold.status == 404 and env.store.legal_holds.get(theirs.id) is None

    fb = await (await env.client.get("/console/feedback")).text()
    assert "Quick and kind" in fb and "4 of 5" in fb
    key = await (await env.client.get("/console/key")).text()
    assert env.records.signer.public_key in key


async def test_values_are_escaped(env):
    chat = env.chat()
    env.records.chat_event(chat.id, "message.visitor", "visitor", seq=3, body="<img src=x onerror=alert(1)>")
    await sign_in(env)
    text = await (await env.client.get(f"/console/chats/{chat.id}")).text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


async def test_sign_out_ends_the_session(env):
    await sign_in(env)
    csrf = csrf_of(await (await env.client.get("/console/")).text())
    r = await env.client.post("/console/sign-out", data={"csrf": csrf})
    assert r.status == 200 and "signed out" in await r.text()
    assert (await env.client.get("/console/")).status == 401
    assert [a["outcome"] for a in env.audits("console.sign_out")] == ["ok"]


async def test_reports_page_and_csv_for_a_period(env):
    import time
    chat = env.chat()
    env.store.feedback.add(chat.id, 5, None)
    await sign_in(env)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    r = await env.client.get("/console/reports", params={"from": today, "to": today})
    text = await r.text()
    assert r.status == 200 and text.count("<svg") >= 8 and "<script" not in text
    assert "Chats per hour of the day" in text and "Waiting time by agency" in text and "5.00 (1)" in text
    default = await env.client.get("/console/reports")
    assert default.status == 200
    got = await env.client.get("/console/reports.csv", params={"from": today, "to": today, "agency": "central"})
    assert got.status == 200 and got.content_type == "text/csv" and "attachment" in got.headers["Content-Disposition"]
    lines = (await got.text()).splitlines()
    assert lines[0] == "section,group,figure,value" and "overall,all,chats,1" in lines
    assert "overall,all,feedback_average,5" in lines
    assert (await env.client.get("/console/reports", params={"from": "2026-13-01"})).status == 400
    assert (await env.client.get("/console/reports", params={"agency": "elsewhere"})).status == 400
    assert (await env.client.get("/console/reports", params={"from": "2020-01-01", "to": today})).status == 400
    assert [a["action"] for a in env.audits("report.viewed")] == ["report.viewed"] * 2
    assert len(env.audits("report.exported")) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_too_many_sign_in_attempts_get_a_clear_429_page_and_leave_the_link_unspent(tmp_path):
    clock = Clock()
    env = await serve(Env(tmp_path, Limit("console_sign_ins", Rate(3, 60), Rate(100, 3600), clock)))
    try:
        url = env.auth.issue_sign_in_link(SERGEANT, "test")
        token = parse_qs(urlsplit(url).query)["token"][0]
        page = await (await env.client.get(f"/console/sign-in?token={token}")).text()
        for i in range(3):                                        # bogus links: refused one by one
            r = await env.client.post("/console/sign-in", data={"token": f"bogus-{i}", "csrf": csrf_of(page)},
                                      allow_redirects=False)
            assert r.status == 403
        r = await env.client.post("/console/sign-in", data={"token": token, "csrf": csrf_of(page)},
                                  allow_redirects=False)
        text = await r.text()
        assert r.status == 429 and r.headers["Retry-After"] == "60" and COOKIE not in r.cookies
        assert "Too many sign-in attempts" in text and "open it again in 1 minute" in text
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")    # a console page as any other
        # On record: the failed ones (the first at once, the repeats when the window ends) and the refusal.
        assert [(a["outcome"], a["details"]["reason"]) for a in env.audits("console.sign_in")] == [
            ("failed", "unknown"), ("refused", "console_sign_ins_per_address")]
        clock.now += 60                                           # the link was not spent: it still works
        r = await env.client.post("/console/sign-in", data={"token": token, "csrf": csrf_of(page)},
                                  allow_redirects=False)
        assert r.status == 303 and COOKIE in r.cookies
        env.records.refusals.flush(everything=True)
        repeats = [a["details"].get("repeats") for a in env.audits("console.sign_in") if a["outcome"] == "failed"]
        assert repeats == [None, 2]
    finally:
        await env.client.close()
        env.store.close()
