"""Webhooks: signature, the journal that owes them, and delivery with retry against a real loopback receiver."""
from __future__ import annotations

import json
import time

import pytest

from bridge.journal import LogJournal
from bridge.config import ConfigError, Webhook
from bridge.store import Store
from bridge.webhooks import signing
from bridge.webhooks.announcing import AnnouncingJournal
from bridge.webhooks.sender import MAX_AGE_SECONDS, WebhookSender, retry_delay
from tests.support.configs import example_config
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.waiting import until

SECRET = "s3cret-for-the-cad-system-0123456789"


class RecordingJournal(LogJournal):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.audits: list[tuple] = []

    def chat_event(self, chat_id, kind, actor, **details):  # type: ignore[no-untyped-def]
        self.events.append((chat_id, kind, actor, details))

    def audit(self, action, actor, outcome="ok", *, target=None, origin=None, **details):  # type: ignore[no-untyped-def]
        self.audits.append((action, actor, outcome, target, origin, details))


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "precinct.db")
    yield s
    s.close()


def new_chat(store: Store, agency: str = "central", n: int = 1):  # type: ignore[no-untyped-def]
    return store.chats.create(f"chat{agency}{n}", f"hash{agency}{n}", "general", agency, "Sam Citizen", "en")


# ---- signing ------------------------------------------------------------------------------------------
def test_signature_verifies_and_rejects_tampering_other_keys_and_old_timestamps():
    body, now = b'{"event":"chat.closed"}', int(time.time())
    sig = signing.sign(SECRET, now, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert signing.verify(SECRET, str(now), body, sig)
    assert not signing.verify(SECRET, now, body + b" ", sig)
    assert not signing.verify("another-secret-0123456789", now, body, sig)
    assert not signing.verify(SECRET, now + 1, body, sig)                        # timestamp is signed too
    old = now - signing.TOLERANCE_SECONDS - 5
    assert not signing.verify(SECRET, old, body, signing.sign(SECRET, old, body))
    assert not signing.verify(SECRET, "yesterday", body, sig)


def test_retry_delays_double_up_to_ten_minutes():
    assert [retry_delay(n) for n in (1, 2, 3, 4, 10, 11, 30)] == [1, 2, 4, 8, 512, 600, 600]


# ---- the journal that owes deliveries -------------------------------------------------------------------
def test_only_chat_life_events_of_the_hooked_agency_are_owed_without_personal_data(store):
    inner, woken = RecordingJournal(), []
    hooks = [Webhook("central", "http://127.0.0.1:9/a", SECRET), Webhook("north", "http://127.0.0.1:9/b", SECRET)]
    journal = AnnouncingJournal(inner, store, hooks, lambda: woken.append(1))
    central, south = new_chat(store, "central"), new_chat(store, "south")
    with store.db.transaction():
        journal.chat_event(central.id, "queued", None, number=central.number, display_name="Sam Citizen",
                           language="en", topic="general")
    journal.chat_event(central.id, "message.visitor", "visitor", seq=2, body="my address is 1 High St")
    journal.chat_event(south.id, "closed", "visitor", by="visitor")              # no hook for south
    journal.chat_event(central.id, "transferred", "@o:x", to_agency="north", reason="night desk")
    journal.audit("chat.close", "@o:x", target=central.id)

    assert [e[1] for e in inner.events] == ["queued", "message.visitor", "closed", "transferred"]
    assert inner.audits == [("chat.close", "@o:x", "ok", central.id, None, {})]
    rows = store.db.rows("SELECT agency, url, event, payload FROM webhook_outbox ORDER BY id")
    assert [(r["agency"], r["event"]) for r in rows] == [
        ("central", "chat.queued"), ("central", "chat.transferred"), ("north", "chat.transferred")]
    queued = json.loads(rows[0]["payload"])
    assert queued["chat"]["number"] == central.number and queued["chat"]["agency"] == "central"
    assert queued["details"] == {"number": central.number, "topic": "general"}
    assert "Sam" not in rows[0]["payload"] and "High St" not in json.dumps(rows)
    assert json.loads(rows[2]["payload"])["details"] == {"to_agency": "north", "reason": "night desk"}
    assert len(woken) == 2


def test_a_rolled_back_change_owes_no_delivery(store):
    journal = AnnouncingJournal(RecordingJournal(), store, [Webhook("central", "http://127.0.0.1:9/", SECRET)],
                                lambda: None)
    chat = new_chat(store)
    with pytest.raises(RuntimeError):
        with store.db.transaction():
            journal.chat_event(chat.id, "closed", "@o:x")
            raise RuntimeError("the close failed")
    assert store.webhooks.pending_count() == 0


# ---- delivery ---------------------------------------------------------------------------------------
async def test_delivery_is_signed_retried_after_a_receiver_error_and_in_order(store):
    receiver = await WebhookReceiver(statuses=[500]).start()
    hooks = [Webhook("central", receiver.url, SECRET)]
    inner = RecordingJournal()
    sender = WebhookSender(store.webhooks, hooks, inner, store.db.transaction, store.db.durable)
    journal = AnnouncingJournal(inner, store, hooks, sender.wake)
    chat = new_chat(store)
    sender.start()
    try:
        journal.chat_event(chat.id, "queued", None)
        journal.chat_event(chat.id, "closed", "@officer1:police.example", by="officer")
        await until(lambda: store.webhooks.pending_count() == 0, 30, "both deliveries")
    finally:
        await sender.stop()
        await receiver.stop()
    assert [r.status for r in receiver.requests] == [500, 200, 200]
    first, retry, second = receiver.requests
    assert first.body == retry.body and first.headers["X-Precinct-Delivery"] == retry.headers["X-Precinct-Delivery"]
    for r in receiver.requests:
        assert signing.verify(SECRET, r.headers["X-Precinct-Timestamp"], r.body, r.headers["X-Precinct-Signature"])
        assert r.headers["Content-Type"] == "application/json"
    assert [json.loads(r.body)["event"] for r in (retry, second)] == ["chat.queued", "chat.closed"]
    assert retry.headers["X-Precinct-Event"] == "chat.queued"
    closed = json.loads(second.body)
    assert closed["actor"] == "@officer1:police.example" and closed["details"] == {"by": "officer"}
    state = store.webhooks.state(first.headers["X-Precinct-Delivery"])
    assert state["state"] == "delivered" and state["attempts"] == 2


async def test_an_unreachable_receiver_is_retried_later_then_given_up_after_a_day_and_audited(store):
    receiver = await WebhookReceiver().start()
    url = receiver.url
    await receiver.stop()                                       # nothing listens there now
    inner = RecordingJournal()
    AnnouncingJournal(inner, store, [Webhook("central", url, SECRET)], lambda: None).chat_event(
        new_chat(store).id, "closed", "visitor")
    clock = [time.time() + 0.01]                                # the sender's own clock, moved by the test
    sender = WebhookSender(store.webhooks, [Webhook("central", url, SECRET)], inner, store.db.transaction, store.db.durable,
                           clock=lambda: clock[0])
    try:
        wait = await sender.deliver_due()                       # driven by hand: no background loop
        assert 0.9 <= wait <= 1.0                               # first retry after a second
        row = store.db.row("SELECT state, attempts, last_error FROM webhook_outbox")
        assert row["state"] == "pending" and row["attempts"] == 1 and "Error" in row["last_error"]
        assert 0 < await sender.deliver_due() <= wait           # not due yet: nothing sent
        assert store.db.row("SELECT attempts FROM webhook_outbox")["attempts"] == 1
        clock[0] += 1.0
        assert 1.9 <= await sender.deliver_due() <= 2.0         # tried again; the next wait doubles
        assert store.db.row("SELECT attempts FROM webhook_outbox")["attempts"] == 2
        clock[0] += MAX_AGE_SECONDS + 1
        await sender.deliver_due()
    finally:
        await sender.stop()
    assert store.db.row("SELECT state FROM webhook_outbox")["state"] == "failed"
    assert [a[:3] for a in inner.audits] == [("webhook.given_up", "bridge", "failed")]


async def test_one_chats_failing_delivery_holds_up_only_that_chat(store):
    first, second = new_chat(store, n=1), new_chat(store, n=2)
    receiver = await WebhookReceiver(failing_chats={first.id}).start()
    hooks = [Webhook("central", receiver.url, SECRET)]
    inner = RecordingJournal()
    journal = AnnouncingJournal(inner, store, hooks, lambda: None)
    journal.chat_event(first.id, "queued", None)
    journal.chat_event(first.id, "closed", "visitor")
    journal.chat_event(second.id, "queued", None)
    clock = [time.time() + 0.01]
    sender = WebhookSender(store.webhooks, hooks, inner, store.db.transaction, store.db.durable,
                           clock=lambda: clock[0])
    try:
        await sender.deliver_due()
        clock[0] += 1.0
        await sender.deliver_due()
    finally:
        await sender.stop()
        await receiver.stop()
    seen = [(json.loads(r.body)["chat"]["id"], json.loads(r.body)["event"], r.status) for r in receiver.requests]
    assert sorted(seen) == sorted([(first.id, "chat.queued", 500), (second.id, "chat.queued", 200),
                                   (first.id, "chat.queued", 500)])      # its chat.closed waits behind it
    assert store.webhooks.pending_count() == 2


async def test_a_removed_webhook_is_given_up_not_sent_unsigned(store):
    inner = RecordingJournal()
    AnnouncingJournal(inner, store, [Webhook("central", "http://127.0.0.1:9/old", SECRET)], lambda: None).chat_event(
        new_chat(store).id, "queued", None)
    sender = WebhookSender(store.webhooks, [], inner, store.db.transaction, store.db.durable)
    try:
        await sender.deliver_due()
    finally:
        await sender.stop()
    assert store.db.row("SELECT state, last_error FROM webhook_outbox") == {"state": "failed",
                                                                           "last_error": "no longer configured"}


# ---- configuration ----------------------------------------------------------------------------------
def test_webhook_config_is_validated_naming_the_entry(tmp_path):
    from bridge import config as cfg
    base = example_config(tmp_path)
    raw = {"homeserver": {"server_name": "police.example"},
           "appservice": {"as_token": "a" * 64, "hs_token": "b" * 64}, "crypto": {"pickle_key": "c" * 64},
           "agencies": [{"id": a.id, "name": a.name, "officers": list(a.officers)} for a in base.agencies]}
    ok = cfg.load({**raw, "webhooks": {"endpoints": [{"agency": "central", "url": "https://cad.police.example/in",
                                        "secret": SECRET}]}}, tmp_path, {})
    assert ok.webhooks == [Webhook("central", "https://cad.police.example/in", SECRET)]
    bad = [({"agency": "nowhere", "url": "https://x.example", "secret": SECRET}, "webhooks.endpoints[0].agency"),
           ({"agency": "central", "url": "ftp://x", "secret": SECRET}, "webhooks.endpoints[0].url"),
           ({"agency": "central", "url": "https://x.example", "secret": "CHANGE-ME-please-123"}, "webhooks.endpoints[0].secret"),
           ({"agency": "central", "url": "https://x.example", "secret": "short"}, "webhooks.endpoints[0].secret"),
           ({"agency": "central", "url": "https://x.example"}, "webhooks.endpoints[0]:")]
    for entry, named in bad:
        with pytest.raises(ConfigError) as e:
            cfg.load({**raw, "webhooks": {"endpoints": [entry]}}, tmp_path, {})
        assert named in str(e.value)
