#!/usr/bin/env python3
"""Token and id abuse at volume (issue 13): nothing is accepted, and no refusal tells more than "no such chat".

    .venv/bin/python bench/token_abuse.py [--rounds 20] [--keep]

Its own Synapse and bridge on loopback (bench/chaos_parts.py). Three real chats: A (the target), B (the
attacker's own, whose token is valid) and R (closed and purged at the end of its retention: its token
revoked; an erased chat keeps its token on purpose, to show the citizen the emptied record, docs/visitor-api.md). Every kind of bad
credential below is tried ``--rounds`` times on every chat endpoint (GET chat, messages, transcript,
attachment; POST message; DELETE; the WebSocket's auth frame), and names with hidden characters on the two
forms that take a name. Each refusal is compared with the refusal of its reference:

    a token no chat has, on a chat ID no chat has      → every token kind (revoked, short, long, truncated,
                                                          with zero-width or right-to-left characters)
    the attacker's valid token, on a chat ID no chat has → the attacker's token on chat A's ID (another
                                                          chat's ID: the answer must not say A exists)

Pass: accepted 0 of N; each kind's (status, error code) equal to its reference's, every HTTP body JSON with
``error`` and ``message``; the medians of the answer times are printed beside the reference's (the store
looks a token up by its hash, so they should not differ by more than noise). Exit 1 on a miss.
A JSON value that is not a string where the auth frame wants a token (array, object, null) is a malformed
frame, not a credential: it gets the ``bad_frame`` error frame, which says nothing about any chat.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402

from chaos_parts import ROOT, Stack, log  # noqa: E402

ENDPOINTS = [("GET", ""), ("GET", "/messages"), ("GET", "/transcript"), ("GET", "/attachments/1"),
             ("POST", "/messages"), ("DELETE", "")]
HIDDEN_NAMES = ["Kim\u202eecilop", "Kim\u200b", "\u2066PC Demo\u2069", "Kim\ufeff", "\u200fKim"]


def random_id() -> str:
    return secrets.token_urlsafe(12)


def random_token() -> str:
    return secrets.token_urlsafe(32)


async def http_try(http: aiohttp.ClientSession, base: str, method: str, chat_id: str, rest: str,
                   token: str) -> tuple[int, str | None, float, bool]:
    """(status, error code, seconds, body was the API's JSON error shape)."""
    kwargs: dict[str, Any] = {"headers": {"Authorization": "Bearer " + token}}
    if method == "POST":
        kwargs["json"] = {"client_id": random_id(), "body": "written with a stolen token"}
    t0 = time.perf_counter()
    async with http.request(method, f"{base}/api/v1/chats/{chat_id}{rest}", **kwargs) as r:
        raw = await r.read()
        took = time.perf_counter() - t0
    try:
        body = json.loads(raw)
        shaped = isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
    except ValueError:
        body, shaped = None, False
    return r.status, body.get("error") if isinstance(body, dict) else None, took, shaped


async def ws_try(http: aiohttp.ClientSession, base: str, chat_id: str, token: Any) -> tuple[int, str | None, float]:
    """The auth frame with this token: (close code or 0, error code of an error frame or None, seconds)."""
    t0 = time.perf_counter()
    async with http.ws_connect(f"{base.replace('http', 'ws', 1)}/api/v1/chats/{chat_id}/ws") as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": token, "since": 0}))
        msg = await ws.receive(timeout=10)
        took = time.perf_counter() - t0
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame = json.loads(msg.data)
            return 0, frame.get("code") or frame.get("error") if frame.get("type") == "error" else frame.get("type"), took
        return ws.close_code or 0, None, took


def revoke(stack: Stack, chat_id: str) -> None:
    """What revokes a citizen's token: the chat purged at the end of its retention. Its closing time is moved
    back past the retention (the one thing not done by the bridge), then the bridge's own purge runs."""
    with sqlite3.connect(stack.db_path, timeout=30) as conn:
        conn.execute("UPDATE chats SET closed_ts = closed_ts - ? WHERE id = ?",
                     [(stack.config["records"].get("retention_days", 730) + 1) * 86_400_000
                      if stack.config.get("records") else 731 * 86_400_000, chat_id])
    conn.close()
    subprocess.run([sys.executable, "-m", "bridge", "records", "purge", "-c", str(stack.config_path)], check=True,
                   cwd=ROOT, capture_output=True, timeout=120)
    with sqlite3.connect(f"file:{stack.db_path}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM chats WHERE id = ?", [chat_id]).fetchone()[0] == 0, "not purged"
    conn.close()


async def open_chat(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    async with http.post(f"{base}/api/v1/chats", json={"topic": "general"}) as r:
        assert r.status == 201, await r.text()
        data = await r.json()
    return data["chat_id"], data["token"]


async def run(stack: Stack, rounds: int) -> dict[str, Any]:
    base = stack.public_url
    rows: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        a_id, a_token = await open_chat(http, base)
        b_id, b_token = await open_chat(http, base)
        r_id, r_token = await open_chat(http, base)
        async with http.post(f"{base}/api/v1/chats/{r_id}/close", headers={"Authorization": "Bearer " + r_token},
                             json={}) as r:
            assert r.status == 200, await r.text()
        revoke(stack, r_id)

        unknown = lambda: (random_id(), random_token())            # noqa: E731
        kinds: dict[str, tuple[Any, Any]] = {
            # name: (what is tried: () → (chat_id, token)), (its reference: () → (chat_id, token))
            "revoked (chat purged)": (lambda: (r_id, r_token), unknown),
            "short": (lambda: (a_id, "x"), unknown),
            "truncated": (lambda: (a_id, a_token[:-1]), unknown),
            "long (4,000 chars)": (lambda: (a_id, "A" * 4000), unknown),
            "zero-width inside": (lambda: (a_id, a_token[:10] + "\u200b" + a_token[10:]), unknown),
            "right-to-left override": (lambda: (a_id, "\u202e" + a_token), unknown),
            "another chat's ID": (lambda: (a_id, b_token), lambda: (random_id(), b_token)),
            "another chat's ID (revoked target)": (lambda: (r_id, b_token), lambda: (random_id(), b_token)),
        }
        for name, (tried, reference) in kinds.items():
            for method, rest in ENDPOINTS:
                got, ref = [], []
                for _ in range(rounds):
                    cid, tok = tried()
                    try:
                        got.append(await http_try(http, base, method, cid, rest, tok))
                    except (aiohttp.ClientError, UnicodeEncodeError) as e:
                        got.append((0, f"client could not send: {type(e).__name__}", 0.0, True))
                    rid, rtok = reference()
                    ref.append(await http_try(http, base, method, rid, rest, rtok))
                rows.append(row(f"{name}: {method} {rest or '/'}", got, ref))
            got, ref = [], []
            for _ in range(rounds):
                cid, tok = tried()
                got.append((*(await ws_try(http, base, cid, tok))[:2], 0.0, True))
                rid, rtok = reference()
                ref.append((*(await ws_try(http, base, rid, rtok))[:2], 0.0, True))
            rows.append(row(f"{name}: WebSocket auth", got, ref))
        for value, label in (([a_token], "array"), ({"token": a_token}, "object"), (None, "null")):
            got = [(*(await ws_try(http, base, a_id, value))[:2], 0.0, True) for _ in range(rounds)]
            rows.append(row(f"token as JSON {label}: WebSocket auth", got, [(0, "bad_frame", 0.0, True)] * rounds))
        for field, path, extra in (("display_name", "/api/v1/chats", {"topic": "general"}),
                                   ("name", "/api/v1/offline_messages", {"topic": "general", "message": "hi"})):
            got = []
            for _ in range(rounds):
                for hidden in HIDDEN_NAMES:
                    t0 = time.perf_counter()
                    async with http.post(base + path, json={**extra, field: hidden}) as r:
                        body = await r.json(content_type=None)
                        got.append((r.status, body.get("error"), time.perf_counter() - t0,
                                    isinstance(body.get("message"), str)))
            rows.append(row(f"hidden characters in {field}", got, [(400, "bad_request", 0.0, True)] * len(got)))
        # Chat A is untouched by all of it: still there for its own token, nothing written into it.
        async with http.get(f"{base}/api/v1/chats/{a_id}/messages",
                            headers={"Authorization": "Bearer " + a_token}) as r:
            intact = r.status == 200 and not [m for m in (await r.json()).get("messages", [])
                                              if m.get("from") == "visitor"]
    return {"rows": rows, "target_intact": intact}


def row(name: str, got: list[tuple], ref: list[tuple]) -> dict[str, Any]:
    accepted = sum(1 for status, code, *_ in got if 200 <= status < 300 or code == "ready")
    answers = sorted({(s, c) for s, c, *_ in got})
    expected = sorted({(s, c) for s, c, *_ in ref})
    times = [t for _, _, t, _ in got if t]
    ref_times = [t for _, _, t, _ in ref if t]
    return {"what": name, "n": len(got), "accepted": accepted, "answers": answers, "reference": expected,
            "same": answers == expected, "json": all(shaped for *_, shaped in got),
            "median_ms": round(statistics.median(times) * 1000, 2) if times else None,
            "reference_median_ms": round(statistics.median(ref_times) * 1000, 2) if ref_times else None}


def report(result: dict[str, Any]) -> bool:
    print(f"\n{'what':58} {'n':>4} {'accepted':>8} {'answer (status, error)':34} {'same as ref':>11} "
          f"{'ms p50 / ref':>14}")
    ok = result["target_intact"]
    for r in result["rows"]:
        good = r["accepted"] == 0 and r["same"] and r["json"]
        ok = ok and good
        times = f"{r['median_ms']} / {r['reference_median_ms']}" if r["median_ms"] is not None else "—"
        print(f"{r['what'][:58]:58} {r['n']:>4} {r['accepted']:>8} {str(r['answers'])[:34]:34} "
              f"{('yes' if r['same'] else 'NO'):>11} {times:>14}{'' if good else '   ✗'}")
    total = sum(r["n"] for r in result["rows"])
    print(f"\n{total} tries, accepted {sum(r['accepted'] for r in result['rows'])}; target chat intact: "
          f"{result['target_intact']}; verdict: {'PASS' if ok else 'FAIL'}")
    print(json.dumps({"tries": total, "accepted": sum(r["accepted"] for r in result["rows"]),
                      "all_same_as_reference": all(r["same"] for r in result["rows"]), "pass": ok}))
    return ok


async def main_async(args: argparse.Namespace) -> int:
    stack = Stack.prepare(keep=args.keep)
    try:
        stack.bridge.start()
        log(f"bridge up at {stack.public_url}; {args.rounds} rounds of each kind on each endpoint")
        result = await run(stack, args.rounds)
        return 0 if report(result) else 1
    finally:
        stack.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, store)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
