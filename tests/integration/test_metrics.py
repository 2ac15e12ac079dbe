"""/metrics on the private listener moves as a real chat happens (real bridge, real Synapse, nio officer)."""
from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from urllib.parse import quote

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MatrixEnv
from tests.support.bridge_db import room_of
from tests.support.visitor import Visitor
from tests.support.waiting import until


async def scrape(env: MatrixEnv) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as s, s.get(env.metrics_url) as r:
        assert r.status == 200
        text = await r.text()
    return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.agency
async def test_metrics_move_as_a_chat_happens(matrix_env: MatrixEnv, agency, officer_of, bridge_log):
    """In an agency of its own, so its queue and counts move with this chat alone."""
    # Only the private listener has them; the public one does not.
    try:
        urllib.request.urlopen(matrix_env.public_url + "/metrics", timeout=5)
        raise AssertionError("the public listener must not serve /metrics")
    except urllib.error.HTTPError as e:
        assert e.code == 404

    officer = await officer_of(agency.officers[0])
    before = await scrape(matrix_env)
    visitor = Visitor(matrix_env.public_url)
    try:
        officer.auto_join = lambda room_id: False          # let the chat wait in the queue first
        await visitor.create(topic=agency.topic)
        await visitor.connect()
        queued = await until(lambda: _scrape_if(matrix_env, lambda m: value(m, "precinct_queue_length",
                             agency=agency.id) > value(before, "precinct_queue_length", agency=agency.id)),
                             60, "queue length of the agency to grow")
        assert value(queued, "precinct_queue_length", agency=agency.id) == 1
        assert value(queued, "precinct_waiting_seconds_count", agency=agency.id) == \
            value(before, "precinct_waiting_seconds_count", agency=agency.id)

        officer.auto_join = lambda room_id: True
        room = await _join_invited(matrix_env, officer, visitor.chat_id)
        got = await visitor.send(f"metrics {secrets.token_hex(4)}")
        assert got
        await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active",
                                 what="active status")
        await officer.send(room, "Hello, officer here.")
        await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == "Hello, officer here.",
                                 what="officer reply at the citizen")

        def moved(m: dict) -> bool:
            return (value(m, "precinct_active_chats", agency=agency.id)
                    > value(before, "precinct_active_chats", agency=agency.id)
                    and value(m, "precinct_waiting_seconds_count", agency=agency.id)
                    > value(before, "precinct_waiting_seconds_count", agency=agency.id)
                    and value(m, "precinct_first_response_seconds_count", agency=agency.id)
                    > value(before, "precinct_first_response_seconds_count", agency=agency.id)
                    and value(m, "precinct_messages_bridged_total", direction="to_matrix")
                    > value(before, "precinct_messages_bridged_total", direction="to_matrix")
                    and value(m, "precinct_messages_bridged_total", direction="to_citizen")
                    > value(before, "precinct_messages_bridged_total", direction="to_citizen")
                    and value(m, "precinct_websocket_connections") >= 1
                    and value(m, "precinct_appservice_transaction_lag_seconds_count")
                    > value(before, "precinct_appservice_transaction_lag_seconds_count"))
        during = await until(lambda: _scrape_if(matrix_env, moved), 60, "metrics of an answered chat")
        assert value(during, "precinct_queue_length", agency=agency.id) == 0

        # An officer event nobody can decrypt (no such session) counts as a decrypt failure.
        await _send_undecryptable(matrix_env, officer, room)
        await until(lambda: _scrape_if(matrix_env, lambda m: value(m, "precinct_decrypt_failures_total",
                    final="false") > value(before, "precinct_decrypt_failures_total", final="false")),
                    60, "a decrypt failure counted")

        sockets = value(during, "precinct_websocket_connections")
        await visitor.disconnect()
        await until(lambda: _scrape_if(matrix_env, lambda m: value(m, "precinct_websocket_connections")
                                       < sockets), 30, "WebSocket gauge to drop")
    finally:
        await visitor.close()


async def _scrape_if(env: MatrixEnv, check) -> dict | None:  # type: ignore[no-untyped-def]
    m = await scrape(env)
    return m if check(m) else None


async def _join_invited(env: MatrixEnv, officer, chat_id: str) -> str:  # type: ignore[no-untyped-def]
    """Join the chat's room once the officer holds its invite."""
    room_id = await room_of(env.dir / "precinct.db", chat_id, timeout=60)
    await until(lambda: room_id in officer.client.invited_rooms, 60, "the chat's invite")
    resp = await officer.client.join(room_id)
    assert getattr(resp, "room_id", None) == room_id, resp
    await officer.wait_joined(room_id)
    return room_id


async def _send_undecryptable(env: MatrixEnv, officer, room_id: str) -> None:  # type: ignore[no-untyped-def]
    content = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "x" * 43, "device_id": officer.client.device_id,
               "session_id": "no-such-session-" + secrets.token_hex(8), "ciphertext": "AAAA"}
    url = (f"{env.synapse.url}/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.encrypted/"
           f"metrics-{secrets.token_hex(6)}")
    async with aiohttp.ClientSession() as s, s.put(
            url, json=content, headers={"Authorization": f"Bearer {officer.client.access_token}"}) as r:
        assert r.status == 200, await r.text()
