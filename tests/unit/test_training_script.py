"""Practice chats (issue 15, training): the scripted citizen's turns, the marks that tell a practice chat
from a real one, and that practice never reaches reports, estimates, webhooks or real chats' retention."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from bridge import config as cfg
from bridge.chats import training
from bridge.config import Scenario, Webhook
from bridge.store import Store
from bridge.store.chats import CLOSED
from bridge.webhooks.announcing import AnnouncingJournal
from tests.support.configs import ROOT

SCRIPT = Scenario("bike", "Stolen bicycle", ("first", "second", "third"))


def test_the_citizen_opens_then_answers_each_reply_once_until_the_script_ends():
    assert training.next_line(SCRIPT, 0, 0) == (0, "first")           # at once, before any officer
    assert training.next_line(SCRIPT, 1, 0) is None                   # waits for a reply
    assert training.next_line(SCRIPT, 1, 1) == (1, "second")
    assert training.next_line(SCRIPT, 2, 1) is None                   # one line per reply, not more
    assert training.next_line(SCRIPT, 2, 5) == (2, "third")           # several replies: still one line
    assert training.next_line(SCRIPT, 3, 9) is None                   # the script is done


def test_a_practice_room_and_client_ids_say_what_they_are():
    assert training.room_name(1004, "General enquiry", "bike") == "TRAINING — Chat 1004 — General enquiry"
    assert training.room_name(1004, "General enquiry", None) == "Chat 1004 — General enquiry"
    assert training.client_id(2) == "practice-2"


def _raw(scenarios):  # type: ignore[no-untyped-def]
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["training"] = {"scenarios": scenarios}
    return raw


def test_scenarios_are_read_and_every_mistake_is_named(tmp_path: Path):
    config = cfg.load(_raw([{"id": "bike", "title": " Bike ", "lines": ["a ", "b"]}]), tmp_path, {})
    assert config.scenarios == (Scenario("bike", "Bike", ("a", "b")),)
    assert config.scenario(None) == config.scenario("bike") and config.scenario("nope") is None
    for bad, key in [([{"id": "Bike!", "title": "t", "lines": ["a"]}], "training.scenarios[0].id"),
                     ([{"id": "live", "title": "t", "lines": ["a"]}], "training.scenarios[0].id"),
                     ([{"id": "b", "title": "t", "lines": []}], "training.scenarios[0].lines"),
                     ([{"id": "b", "title": "", "lines": ["a"]}], "training.scenarios[0].title"),
                     ([{"id": "b", "title": "t", "lines": ["a"], "x": 1}], "training.scenarios[0]"),
                     ([{"id": "b", "title": "t", "lines": ["a"]}] * 2, "training.scenarios[1].id"),
                     ({"id": "b"}, "training.scenarios")]:
        with pytest.raises(cfg.ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            cfg.load(_raw(bad), tmp_path, {})


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(tmp_path / "precinct.db")
    yield s
    s.close()


def _chat(store: Store, n: int, training_id: str | None):  # type: ignore[no-untyped-def]
    chat = store.chats.create(f"c{n}", f"h{n}", "general", "central", "Sam", "en", training=training_id)
    now = int(time.time() * 1000)
    store.db.execute("UPDATE chats SET answered_ts = ?, closed_ts = ?, state = ? WHERE id = ?",
                     [now - 1000, now - 500, CLOSED, chat.id])
    return chat


def test_practice_never_counts_in_reports_or_estimates_and_has_its_own_retention(store: Store):
    real, practice = _chat(store, 1, None), _chat(store, 2, "bike")
    since, until = int(time.time() * 1000) - 60_000, int(time.time() * 1000) + 60_000
    assert [r["chat_id"] for r in store.chats.report_facts(["central"], since, until)] == [real.id]
    assert len(store.chats.recent_waits("general", since)) == 1
    assert [c.id for c in store.chats.expired("central", until)] == [real.id]
    assert [c.id for c in store.chats.expired("central", until, training=True)] == [practice.id]


def test_a_practice_chat_owes_no_webhook(store: Store):
    journal = AnnouncingJournal(_Quiet(), store, [Webhook("central", "http://127.0.0.1:9/", "s" * 32)], lambda: None)
    real, practice = _chat(store, 1, None), _chat(store, 2, "bike")
    for chat in (real, practice):
        journal.chat_event(chat.id, "queued", None)
        journal.chat_event(chat.id, "closed", "@o:x")
    assert store.webhooks.pending_count() == 2                        # the real chat's two, none of practice's


class _Quiet:
    def chat_event(self, *a, **k) -> None: ...  # type: ignore[no-untyped-def]
    def audit(self, *a, **k) -> None: ...  # type: ignore[no-untyped-def]
    def refused(self, *a, **k) -> None: ...  # type: ignore[no-untyped-def]
