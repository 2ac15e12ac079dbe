"""Routing decisions (bridge/officers/decide.py), emergency words, business hours: pure rules."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.config import Hours, Timeouts
from bridge.officers import decide, emergency, hours
from bridge.officers.decide import Candidate
from bridge.store.chats import ACTIVE, CLOSED, WAITING, Chat

T = Timeouts(unclaimed_seconds=10, unanswered_seconds=20, visitor_idle_seconds=30, visitor_idle_close_seconds=5)


def chat(**kw) -> Chat:
    base = dict(id="c", number=1001, token_hash="h", topic="general", agency="central", display_name=None,
                language=None, state=WAITING, puppet=None, room_id=None, officer=None, created_ts=0, ready_ts=None,
                closed_ts=None)
    return Chat(**{**base, **kw})


# ---- who gets a chat -----------------------------------------------------------------------------------
def test_fewest_chats_under_the_cap_wins():
    people = [Candidate("@a:x", 2, True), Candidate("@b:x", 1, True), Candidate("@c:x", 0, False)]
    assert decide.pick_officer(people, cap=3) == "@b:x"


def test_nobody_at_or_over_the_cap_or_away():
    people = [Candidate("@a:x", 2, True), Candidate("@b:x", 0, False)]
    assert decide.pick_officer(people, cap=2) is None


def test_ties_go_to_who_waited_longest_and_excluded_are_skipped():
    people = [Candidate("@a:x", 1, True, last_assigned_ts=50), Candidate("@b:x", 1, True, last_assigned_ts=10)]
    assert decide.pick_officer(people, cap=3) == "@b:x"
    assert decide.pick_officer(people, cap=3, exclude=frozenset({"@b:x"})) == "@a:x"


@pytest.mark.parametrize("said, presence, available", [
    (None, "online", False), (1, None, True), (1, "online", True), (1, "offline", False),
    (1, "unavailable", False), (0, "online", False)])
def test_availability_needs_the_command_and_no_offline_presence(said, presence, available):
    assert decide.is_available(said, presence) is available


# ---- timers ---------------------------------------------------------------------------------------------
def test_unclaimed_realerts_after_the_timeout_and_again_after_each_alert():
    assert decide.due(chat(), T, 9_999, None, None) is None
    assert decide.due(chat(), T, 10_000, None, None) == decide.REALERT
    assert decide.due(chat(alerted_ts=10_000), T, 19_999, None, None) is None
    assert decide.due(chat(alerted_ts=10_000), T, 20_000, None, None) == decide.REALERT


def test_claimed_but_unanswered_goes_back():
    claimed = chat(claimed_by="@o:x", claimed_ts=1_000)
    assert decide.due(claimed, T, 20_999, None, None) is None
    assert decide.due(claimed, T, 21_000, None, None) == decide.UNANSWERED
    assert decide.due(chat(claimed_by="@o:x", claimed_ts=1_000, replied_ts=2_000), T, 99_000, None, None) is None


def test_idle_citizen_is_warned_then_closed_unless_they_reply():
    active = chat(state=ACTIVE, claimed_by="@o:x", claimed_ts=0, replied_ts=1)
    assert decide.due(active, T, 30_999, 500, 1_000) is None
    assert decide.due(active, T, 31_000, 500, 1_000) == decide.IDLE_WARN
    warned = chat(state=ACTIVE, claimed_by="@o:x", claimed_ts=0, replied_ts=1, idle_warned_ts=31_000)
    assert decide.due(warned, T, 35_999, 500, 1_000) is None
    assert decide.due(warned, T, 36_000, 500, 1_000) == decide.IDLE_CLOSE
    assert decide.due(warned, T, 99_000, 32_000, 1_000) is None          # the citizen answered
    assert decide.due(active, T, 99_000, 2_000, 1_000) is None           # the officer is the one to answer


def test_closed_chats_have_no_timers():
    assert decide.due(chat(state=CLOSED), T, 10**9, None, None) is None


def test_zero_turns_a_timer_off():
    off = Timeouts(0, 0, 0, 0)
    assert decide.due(chat(), off, 10**9, None, None) is None
    assert decide.due(chat(state=ACTIVE, claimed_by="@o:x", claimed_ts=0), off, 10**9, 0, 1) is None


# ---- emergency words -------------------------------------------------------------------------------------
LISTS = {"en": ("knife", "help me"), "fr": ("au secours",), "*": ("112",)}


@pytest.mark.parametrize("text, language, found", [
    ("He has a KNIFE!", "en", "knife"),
    ("please help   me now", "en-GB", "help me"),
    ("Au SÉCOURS", "fr", "au secours"),
    ("au secours", None, "au secours"),          # no language: every list applies
    ("call 112", "de", "112"),
    ("knifeless", "en", None),
    ("help meet", "en", None),
    ("au secours", "en", None),                   # another language's phrase
])
def test_emergency_matching(text, language, found):
    assert emergency.match(text, emergency.phrases_for(LISTS, language)) == found


def test_accents_and_case_are_ignored_on_both_sides():
    assert emergency.match("Je suis en DANGER, à l'aide", ["a l'aide"]) == "a l'aide"


# ---- business hours ----------------------------------------------------------------------------------------
LONDON = Hours("Europe/London", {"mon": ((9 * 60, 17 * 60),), "sat": ((10 * 60, 12 * 60),)}, frozenset({"2026-12-28"}))


@pytest.mark.parametrize("utc, open_", [
    (datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc), True),     # Monday 09:00 GMT
    (datetime(2026, 11, 30, 17, 0, tzinfo=timezone.utc), False),    # closes at 17:00
    (datetime(2026, 6, 1, 8, 30, tzinfo=timezone.utc), True),       # Monday 09:30 BST
    (datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc), False),    # Sunday: not listed
    (datetime(2026, 12, 28, 10, 0, tzinfo=timezone.utc), False),    # a Monday holiday
])
def test_business_hours_in_the_agency_time_zone(utc, open_):
    assert hours.is_open(LONDON, utc) is open_


def test_no_hours_means_always_open():
    assert hours.is_open(None)
