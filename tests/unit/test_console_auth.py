"""Console sign-in: one-time links that expire, sessions that end when idle, refusals on record."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.console.auth import ConsoleAuth, Supervisor
from bridge.store import Store
from tests.unit.test_webhooks import RecordingJournal

SERGEANT, OFFICER = "@sergeant:police.example", "@officer1:police.example"


@pytest.fixture
def env(tmp_path):
    store = Store.open(tmp_path / "precinct.db")
    clock = [1_800_000_000.0]
    journal = RecordingJournal()
    auth = ConsoleAuth(store, journal, lambda u: ("central",) if u == SERGEANT else (),
                       "https://chat.police.example/", link_ttl_seconds=300, idle_minutes=30,
                       clock=lambda: clock[0])
    yield auth, journal, clock, store
    store.close()


def token_of(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "chat.police.example" and parts.path == "/console/sign-in"
    return parse_qs(parts.query)["token"][0]


def audits(journal: RecordingJournal) -> list[tuple[str, str, str]]:
    return [(a[0], a[1], a[2]) for a in journal.audits]


def test_a_link_signs_in_once(env):
    auth, journal, clock, store = env
    url = auth.issue_sign_in_link(SERGEANT, "!dm:police.example")
    token = token_of(url)
    assert len(token) >= 43 and token not in str(store.db.rows("SELECT * FROM console_links"))
    signed = auth.sign_in(token, "203.0.113.5")
    assert signed is not None
    session_id, who = signed
    assert who == Supervisor(SERGEANT, ("central",))
    assert auth.sign_in(token, "203.0.113.9") is None                   # the same link again
    assert audits(journal) == [("console.link", SERGEANT, "ok"), ("console.sign_in", SERGEANT, "ok"),
                               ("console.sign_in", SERGEANT, "failed")]
    # A failed attempt may come from anyone: its address is kept only as a salted hash (records/refusals.py).
    assert journal.audits[-1][5]["reason"] == "used" and journal.audits[-1][4] == "console"
    assert "203.0.113.9" not in str(journal.audits)
    assert auth.session(session_id) == who


def test_a_link_expires_after_its_ttl(env):
    auth, journal, clock, _ = env
    early, late = token_of(auth.issue_sign_in_link(SERGEANT)), token_of(auth.issue_sign_in_link(SERGEANT))
    clock[0] += 299
    assert auth.sign_in(early, None) is not None                        # just inside five minutes
    clock[0] += 2
    assert auth.sign_in(late, None) is None                             # just past them
    assert journal.audits[-1][2] == "failed" and journal.audits[-1][5]["reason"] == "expired"


def test_only_supervisors_get_links_and_refusals_are_audited(env):
    auth, journal, _, store = env
    assert auth.issue_sign_in_link(OFFICER, "!dm2:police.example") is None
    assert audits(journal) == [("console.link", OFFICER, "refused")]
    assert store.db.rows("SELECT * FROM console_links") == []


def test_unknown_or_missing_tokens_fail_on_record(env):
    auth, journal, _, _ = env
    assert auth.sign_in("made-up-token", "198.51.100.1") is None
    assert auth.sign_in("", "198.51.100.1") is None
    assert [(a[0], a[2], a[5]["reason"]) for a in journal.audits] == [
        ("console.sign_in", "failed", "unknown"), ("console.sign_in", "failed", "missing")]


def test_a_session_ends_after_thirty_idle_minutes_but_not_while_used(env):
    auth, _, clock, _ = env
    session_id, _ = auth.sign_in(token_of(auth.issue_sign_in_link(SERGEANT)), None)
    for _ in range(4):                                                  # active for 2 hours: stays open
        clock[0] += 29 * 60
        assert auth.session(session_id) is not None
    clock[0] += 30 * 60 + 1
    assert auth.session(session_id) is None
    clock[0] += 1
    assert auth.session(session_id) is None                             # and it does not come back


def test_sign_out_ends_the_session_and_forged_sessions_are_nobody(env):
    auth, journal, _, _ = env
    session_id, who = auth.sign_in(token_of(auth.issue_sign_in_link(SERGEANT)), None)
    assert auth.session("forged") is None and auth.session(None) is None
    auth.sign_out(session_id, who, "203.0.113.5")
    assert auth.session(session_id) is None
    assert audits(journal)[-1] == ("console.sign_out", SERGEANT, "ok")


def test_a_supervisor_removed_from_the_config_loses_the_console(env, tmp_path):
    auth, journal, clock, store = env
    session_id, _ = auth.sign_in(token_of(auth.issue_sign_in_link(SERGEANT)), None)
    pending = token_of(auth.issue_sign_in_link(SERGEANT))
    auth.supervises = lambda u: ()
    assert auth.session(session_id) is None
    assert auth.sign_in(pending, None) is None
    assert journal.audits[-1][5]["reason"] == "no longer a supervisor"
