"""Admission control (issue 10) through the real bridge and a real Synapse: token buckets per client address
and overall for chat creation, offline messages, uploads and console sign-in; X-Forwarded-For believed only
from the trusted proxy; repeated refusals as one audit entry per source per window with their count.

These run on the bridge with tight limits (tests/support/limited.py: a burst of a few, then one token an
hour), restarted with full buckets for each test; every source is a loopback address of its own."""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.test_attachments import tiny_png
from tests.support.limited import PHONE, PROXY, LimitedEnv

ROOT = Path(__file__).parents[2]


def client(source: str) -> aiohttp.ClientSession:
    """Requests from this loopback address, as a citizen elsewhere would send them."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), limit=0),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))     # cookies for 127.0.0.1 too


async def answer(r: aiohttp.ClientResponse) -> tuple[int, dict[str, str], Any]:
    text = await r.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    return r.status, dict(r.headers), body


async def create_chats(env: LimitedEnv, source: str, n: int, headers: dict[str, str] | None = None,
                       ) -> list[tuple[int, dict[str, str], Any]]:
    """``n`` chat creations from ``source``, all in flight at once (a script, not a person)."""
    async with client(source) as http:
        async def one() -> tuple[int, dict[str, str], Any]:
            async with http.post(env.public_url + "/api/v1/chats", json={"topic": "general"},
                                 headers=headers or {}) as r:
                return await answer(r)
        return list(await asyncio.gather(*(one() for _ in range(n))))


def statuses(answers: list[tuple[int, dict[str, str], Any]]) -> list[int]:
    return sorted(a[0] for a in answers)


def assert_rate_limited(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 429, (status, body)
    assert body["error"] == "rate_limited" and body["message"], body
    assert headers["Retry-After"].isdigit() and int(headers["Retry-After"]) >= 1
    assert body["retry_after"] == int(headers["Retry-After"])


async def refusals_metric(env: LimitedEnv, reason: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(env.metrics_url) as r:
            text = await r.text()
    m = re.search(rf'^precinct_visitor_refusals_total{{reason="{reason}"}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_a_chat_flood_from_one_address_gets_its_burst_and_429s_and_stores_nothing_more(limited_env):
    env = limited_env
    burst = env.limits["chats_per_address"]["burst"]
    chats_before, sources_before = env.count("chats"), env.count("chat_sources")
    metric_before = await refusals_metric(env, "chats_per_address")

    answers = await create_chats(env, "127.0.0.81", burst + 12)
    assert statuses(answers) == [201] * burst + [429] * 12
    for status, headers, body in answers:
        if status == 429:
            assert_rate_limited(status, headers, body)
            # Said as the "busy" answer says it: try later, or phone; the emergency number always.
            assert body["phone_number"] == PHONE and body["emergency_number"] == "999"
            assert PHONE in body["message"] and "999" in body["message"]
    # Nothing of a refused request is stored: no chat, no source, no puppet, no room.
    assert env.count("chats") == chats_before + burst
    assert env.count("chat_sources") == sources_before + burst
    assert env.rows("SELECT COUNT(*) FROM chats WHERE room_id IS NOT NULL OR puppet IS NOT NULL")[0][0] == 0
    assert await refusals_metric(env, "chats_per_address") == metric_before + 12

    # Another address is not held back by the first one's flood.
    (status, _, body), = await create_chats(env, "127.0.0.82", 1)
    assert status == 201, body


async def test_the_overall_bucket_refuses_a_flood_spread_over_many_addresses(limited_session):
    env: LimitedEnv = limited_session
    env.restart(chats_overall={"burst": 5, "per_hour": 1})
    before = env.count("chats")
    admitted = [(await create_chats(env, f"127.0.0.{100 + i}", 1))[0] for i in range(5)]
    assert [a[0] for a in admitted] == [201] * 5
    refused = [(await create_chats(env, f"127.0.0.{105 + i}", 1))[0] for i in range(5)]
    for status, headers, body in refused:                       # each a first request from its address
        assert_rate_limited(status, headers, body)
    assert env.count("chats") == before + 5
    assert await refusals_metric(env, "chats_overall") >= 5


async def test_x_forwarded_for_is_believed_only_from_the_trusted_proxy(limited_env):
    env = limited_env
    burst = env.limits["chats_per_address"]["burst"]
    via_proxy = lambda client_ip: {"X-Forwarded-For": client_ip}      # noqa: E731

    # Behind the proxy each citizen has a bucket of their own, by the address the proxy saw.
    answers = await create_chats(env, PROXY, burst + 2, via_proxy("198.51.100.7"))
    assert statuses(answers) == [201] * burst + [429] * 2
    (status, _, body), = await create_chats(env, PROXY, 1, via_proxy("198.51.100.8"))
    assert status == 201, body
    # What the client wrote to the left of what our proxy added is not believed.
    (status, _, _), = await create_chats(env, PROXY, 1, via_proxy("203.0.113.1, 198.51.100.7"))
    assert status == 429

    # From anyone else the header is ignored: a script cannot buy a fresh bucket by changing it.
    spoofed = [(await create_chats(env, "127.0.0.91", 1, via_proxy(f"198.51.100.{20 + i}")))[0]
               for i in range(burst + 2)]
    assert [a[0] for a in spoofed] == [201] * burst + [429] * 2

    # Malformed headers from the proxy never fail a request; they count against the proxy's own address.
    bad = ["garbage", "[::1", "198.51.100.9:port", "1" * 4000, "²⁰³.0.113.7", "198.51.100.9, nonsense", ",,,"]
    answers = [(await create_chats(env, PROXY, 1, via_proxy(value)))[0] for value in bad]
    assert [a[0] for a in answers] == [201] * burst + [429] * (len(bad) - burst)
    # The proxy's own bucket is spent now; a citizen behind it is still let in.
    (status, _, body), = await create_chats(env, PROXY, 1, via_proxy("198.51.100.10"))
    assert status == 201, body


async def test_offline_messages_are_limited_per_address_and_overall(limited_env):
    env = limited_env
    per_address = env.limits["offline_messages_per_address"]["burst"]
    overall = env.limits["offline_messages_overall"]["burst"]
    before = env.count("tickets")

    async def leave(source: str) -> tuple[int, dict[str, str], Any]:
        async with client(source) as http:
            async with http.post(env.public_url + "/api/v1/offline_messages",
                                 json={"topic": "general", "message": "My bike was stolen last night."}) as r:
                return await answer(r)

    first = [await leave("127.0.0.83") for _ in range(per_address + 2)]
    assert [a[0] for a in first] == [201] * per_address + [429] * 2
    for a in first[per_address:]:
        assert_rate_limited(*a)
    others = [await leave(f"127.0.0.{120 + i}") for i in range(overall - per_address + 2)]
    assert [a[0] for a in others] == [201] * (overall - per_address) + [429] * 2
    assert env.count("tickets") == before + overall
    assert await refusals_metric(env, "offline_messages_per_address") >= 2
    assert await refusals_metric(env, "offline_messages_overall") >= 2


async def test_uploads_are_limited_per_address_before_the_file_is_stored(limited_env):
    env = limited_env
    burst = env.limits["uploads_per_address"]["burst"]
    (status, _, chat), = await create_chats(env, "127.0.0.84", 1)
    assert status == 201, chat
    auth = {"Authorization": f"Bearer {chat['token']}"}

    async def upload(source: str, n: int) -> tuple[int, dict[str, str], Any]:
        async with client(source) as http:
            async with http.post(f"{env.public_url}/api/v1/chats/{chat['chat_id']}/attachments",
                                 params={"client_id": f"{source}-{n}", "filename": "bike.png"},
                                 data=tiny_png(), headers=auth) as r:
                return await answer(r)

    answers = [await upload("127.0.0.84", i) for i in range(burst + 2)]
    assert [a[0] for a in answers] == [201] * burst + [429] * 2, answers
    for a in answers[burst:]:
        assert_rate_limited(*a)
    stored = env.rows("SELECT COUNT(*) FROM attachments WHERE chat_id = ?", [chat["chat_id"]])[0][0]
    assert stored == burst
    status, _, body = await upload("127.0.0.85", 0)               # the same chat from another address
    assert status == 201, body
    assert await refusals_metric(env, "uploads_per_address") >= 2


async def sign_in_attempt(env: LimitedEnv, source: str, token: str) -> tuple[int, dict[str, str], str]:
    """The console's sign-in page, then its form posted with ``token`` (as a browser would, same origin)."""
    async with client(source) as http:
        async with http.get(f"{env.public_url}/console/sign-in", params={"token": token}) as r:
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await r.text()).group(1)  # type: ignore[union-attr]
        async with http.post(f"{env.public_url}/console/sign-in", data={"token": token, "csrf": csrf},
                             headers={"Sec-Fetch-Site": "same-origin"}, allow_redirects=False) as r:
            return r.status, dict(r.headers), await r.text()


async def test_console_sign_in_attempts_are_limited_with_a_clear_page(limited_env):
    env = limited_env
    per_address = env.limits["console_sign_ins_per_address"]["burst"]
    overall = env.limits["console_sign_ins_overall"]["burst"]
    tries = [await sign_in_attempt(env, "127.0.0.93", f"bogus-{i}") for i in range(per_address + 1)]
    assert [t[0] for t in tries] == [403] * per_address + [429]
    assert all("has expired or was already used" in t[2] for t in tries[:per_address])    # tried, and failed
    status, headers, page = tries[-1]
    assert headers["Retry-After"].isdigit() and int(headers["Retry-After"]) >= 1
    assert headers["Content-Type"].startswith("text/html") and "Too many sign-in attempts" in page
    assert "Your sign-in link was not used" in page
    # Other addresses have their own bucket, until all of them together reach the overall one.
    others = [(await sign_in_attempt(env, f"127.0.0.{130 + i}", "bogus"))[0] for i in range(overall - per_address + 1)]
    assert others == [403] * (overall - per_address) + [429]
    assert await refusals_metric(env, "console_sign_ins_per_address") >= 1
    assert await refusals_metric(env, "console_sign_ins_overall") >= 1


def audit_since(env: LimitedEnv, idx: int, action: str) -> list[dict[str, Any]]:
    return [{"outcome": o, "target": t, "origin": g, "details": json.loads(d)} for o, t, g, d in env.rows(
        "SELECT outcome, target, origin, details FROM audit_log WHERE idx > ? AND action = ? ORDER BY idx",
        [idx, action])]


async def test_a_flood_of_refusals_is_two_audit_entries_per_source_with_the_count(limited_env):
    env = limited_env
    mark = env.rows("SELECT COALESCE(MAX(idx), 0) FROM audit_log")[0][0]
    chat_burst = env.limits["chats_per_address"]["burst"]
    sign_in_burst = env.limits["console_sign_ins_per_address"]["burst"]

    # 100 chats from one address, 100 bogus console sign-ins from another, 200 erasure requests for an open chat.
    creations = await create_chats(env, "127.0.0.141", 100)
    assert statuses(creations).count(429) == 100 - chat_burst
    sign_ins = [(await sign_in_attempt(env, "127.0.0.142", f"bogus-{i}"))[0] for i in range(100)]
    assert sign_ins == [403] * sign_in_burst + [429] * (100 - sign_in_burst)
    (status, _, chat), = await create_chats(env, "127.0.0.143", 1)
    assert status == 201
    async with client("127.0.0.143") as http:
        for _ in range(200):
            async with http.delete(f"{env.public_url}/api/v1/chats/{chat['chat_id']}",
                                   headers={"Authorization": f"Bearer {chat['token']}"}) as r:
                assert r.status == 409 and (await r.json())["error"] == "chat_open"

    # While the window is open: the first refusal of each kind from each source is on record, nothing more.
    assert [e["details"]["reason"] for e in audit_since(env, mark, "chat.create")] == ["chats_per_address"]
    assert [(e["outcome"], e["details"]["reason"]) for e in audit_since(env, mark, "console.sign_in")] == [
        ("failed", "unknown"), ("refused", "console_sign_ins_per_address")]
    assert [(e["target"], e["details"]["reason"]) for e in audit_since(env, mark, "chat.erase")] == [
        (chat["chat_id"], "chat_open")]

    # When the window ends (here: the bridge stops, which closes every open window), one entry each with the count.
    env.stop_bridge()
    creates = audit_since(env, mark, "chat.create")
    assert len(creates) == 2 and creates[1]["details"]["repeats"] == 100 - chat_burst - 1
    sign_in_entries = audit_since(env, mark, "console.sign_in")
    assert [(e["outcome"], e["details"].get("repeats")) for e in sign_in_entries] == [
        ("failed", None), ("refused", None), ("failed", sign_in_burst - 1), ("refused", 100 - sign_in_burst - 1)]
    erases = audit_since(env, mark, "chat.erase")
    assert len(erases) == 2 and erases[1]["details"]["repeats"] == 199 and erases[1]["target"] == chat["chat_id"]
    for entries in (creates, sign_in_entries, erases):
        for e in entries:
            assert re.fullmatch(r"[0-9a-f]{64}", e["details"]["source"]), e        # the salted daily hash
            assert e["details"].get("window_seconds", 3600) == 3600
        assert entries[0]["details"]["source"] == entries[-1]["details"]["source"]
    # No client address anywhere in the audit trail, and the trail still verifies.
    everything = str(env.rows("SELECT * FROM audit_log WHERE idx > ?", [mark]))
    assert not re.search(r"127\.0\.0\.14[123]", everything)
    verify = subprocess.run([sys.executable, "-m", "bridge", "audit", "verify", "-c", str(env.config_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
