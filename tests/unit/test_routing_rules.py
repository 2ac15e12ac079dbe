"""Routing decisions (bridge/officers/decide.py), emergency words, business hours (bridge/chats/hours.py): pure rules."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.config import Hours, Timeouts
from bridge.chats import hours
from bridge.officers import decide, dispatch_text, emergency
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
    assert decide.unclaimed_alert([chat()], T, 9_999) == []
    assert decide.unclaimed_alert([chat()], T, 10_000) == [chat()]
    assert decide.unclaimed_alert([chat(alerted_ts=10_000)], T, 19_999) == []
    assert decide.unclaimed_alert([chat(alerted_ts=10_000)], T, 20_000) == [chat(alerted_ts=10_000)]
    assert decide.unclaimed_alert([], T, 10**9) == []
    assert decide.unclaimed_alert([chat()], Timeouts(unclaimed_seconds=0), 10**9) == []


def test_one_realert_per_interval_lists_the_whole_queue():
    """Chats that wait at staggered times share one notice per interval instead of one notice each."""
    queue = [chat(number=1, created_ts=0), chat(number=2, created_ts=4_000), chat(number=3, created_ts=9_000)]
    listed = decide.unclaimed_alert(queue, T, 10_000)       # chat 1 is due: all three go in one notice
    assert [c.number for c in listed] == [1, 2, 3]
    after = [chat(number=c.number, created_ts=c.created_ts, alerted_ts=10_000) for c in queue]
    late = chat(number=4, created_ts=1_000)                  # e.g. requeued: waited long, never listed
    assert decide.unclaimed_alert(after + [late], T, 15_000) == [], "nothing twice within one interval"
    assert [c.number for c in decide.unclaimed_alert(after + [late], T, 20_000)] == [1, 2, 3, 4]
    # a busy queue: at most one notice per interval, however many chats become due in between
    alerted: dict[int, int] = {}
    sent = []
    for now in range(0, 60_000, 1_000):                      # the routing tick, 50 chats arriving 0.7 s apart
        waiting = [chat(number=n, created_ts=n * 700, alerted_ts=alerted.get(n)) for n in range(50) if n * 700 <= now]
        listed = decide.unclaimed_alert(waiting, T, now)
        if listed:
            sent.append(now)
            alerted.update({c.number: now for c in listed})
    assert sent == [10_000, 20_000, 30_000, 40_000, 50_000]


def test_the_realert_notice_names_each_chat_and_counts_the_rest():
    queue = [chat(number=1000 + n, created_ts=n * 1_000) for n in range(25)]
    text = dispatch_text.unclaimed_notice(queue, 60_000, "!")
    assert text.startswith("25 chats are waiting without an officer: Chat 1000 (1m 00s), Chat 1001 (59s)")
    assert "Chat 1019 (41s)" in text and "Chat 1020" not in text and "and 5 more" in text
    assert text.endswith("!claim <number> to take one.")
    assert dispatch_text.unclaimed_notice([chat(number=7, emergency=1)], 3_000, "!").startswith(
        "1 chat is waiting without an officer: Chat 7 (3s, 🚨 emergency)")


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


@pytest.mark.parametrize("state", [WAITING, ACTIVE, CLOSED])
@pytest.mark.parametrize("timeouts", [T, Timeouts(unclaimed_seconds=10, unanswered_seconds=20), Timeouts(0, 0, 0, 0)])
@pytest.mark.parametrize("claimed", [False, True])
def test_the_timers_read_message_times_only_where_due_looks_at_them(state, timeouts, claimed):
    """The timers' pass skips two store reads a second per waiting chat: wherever reads_message_times is false,
    due() answers the same with or without the times (1,000 waiting chats were 2,000 reads a second)."""
    c = chat(state=state, claimed_by="@o:x" if claimed else None, claimed_ts=1_000 if claimed else None,
             idle_warned_ts=None)
    times = [(None, None), (5_000, 9_000), (9_000, 5_000), (1, 2)]
    answers = {decide.due(c, timeouts, 10**6, v, o) for v, o in times}
    if not decide.reads_message_times(c, timeouts):
        assert answers == {decide.due(c, timeouts, 10**6, None, None)}
    else:
        assert state == ACTIVE and timeouts.visitor_idle_seconds
