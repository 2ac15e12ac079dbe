"""Webhooks from the real bridge: a chat of the hooked agency reaches a loopback receiver, signed, retried."""
from __future__ import annotations

import json

import pytest

from bridge.webhooks import signing
from tests.conftest import WEBHOOK_SECRET, MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.visitor import Visitor
from tests.support.waiting import until
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
async def receiver(matrix_env: MatrixEnv):
    r = await WebhookReceiver(fail_first_try=True).start(matrix_env.webhook_port)   # every first try fails
    yield r
    await r.stop()


async def test_chat_events_reach_the_agencys_system_signed_and_retried(matrix_env, officer_of, receiver,
                                                                        bridge_log):
    officer = await officer_of("hooked")
    visitor = Visitor(matrix_env.public_url)
    try:
        got = await open_chat(visitor, officer, topic="hooked")
        await officer.send(got.room_id, "!close done")
        mine = lambda: [r for r in receiver.requests if json.loads(r.body)["chat"]["id"] == visitor.chat_id]  # noqa: E731
        await until(lambda: any(json.loads(r.body)["event"] == "chat.closed" and r.status == 200 for r in mine()),
                    120, "chat.closed delivered")
    finally:
        await visitor.close()
    requests = mine()
    for r in requests:
        assert signing.verify(WEBHOOK_SECRET, r.headers["X-Precinct-Timestamp"], r.body,
                              r.headers["X-Precinct-Signature"]), "signature does not verify"
    first = requests[0]
    assert first.status == 500 and json.loads(first.body)["event"] == "chat.queued"
    for failed in (r for r in requests if r.status == 500):
        again = [r for r in requests if r.headers["X-Precinct-Delivery"] == failed.headers["X-Precinct-Delivery"]
                 and r.status == 200]
        assert len(again) == 1 and again[0].body == failed.body, "a failed delivery was not retried exactly once"
    closed = json.loads(next(r.body for r in requests if json.loads(r.body)["event"] == "chat.closed"))
    assert closed["agency"] == "hooked" and closed["chat"]["state"] == "closed"
    assert closed["actor"] == matrix_env.officer_id("hooked") and closed["details"]["reason"] == "done"
    assert all(r.headers["X-Precinct-Event"] == json.loads(r.body)["event"] for r in requests)
    delivered = [json.loads(r.body)["event"] for r in requests if r.status == 200]
    assert delivered == ["chat.queued", "chat.claimed", "chat.closed"], delivered   # in order, each once
    claimed = json.loads(next(r.body for r in requests if json.loads(r.body)["event"] == "chat.claimed"))
    assert claimed["actor"] == matrix_env.officer_id("hooked") and claimed["chat"]["number"] == closed["chat"]["number"]
