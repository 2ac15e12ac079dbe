"""Report figures against a scripted set of chats whose times are known, so every figure is exact."""
from __future__ import annotations

import calendar
import csv
import io

from bridge.reports import charts
from bridge.reports.figures import UNANSWERED, ChatFacts, percentile
from bridge.reports.report import build, csv_text, facts
from bridge.records import Records
from bridge.store import Store
from bridge.store.messages import OFFICER
from tests.support.configs import example_config

DAY1 = calendar.timegm((2026, 11, 2, 0, 0, 0)) * 1000          # Monday 2 November 2026, 00:00 UTC
H, M, S = 3_600_000, 60_000, 1000
A, B, C = "@a:police.example", "@b:police.example", "@c:police.example"


def at(day: int, hour: int, minute: int = 0) -> int:
    return DAY1 + (day - 1) * 24 * H + hour * H + minute * M


def scripted() -> list[ChatFacts]:
    def chat(cid, agency, topic, officer, created, wait=None, first=None, close=None, **kw):  # type: ignore[no-untyped-def]
        return ChatFacts(cid, agency, topic, officer, created,
                         created + wait * S if wait is not None else None,
                         created + first * S if first is not None else None,
                         created + close * S if close is not None else None, **kw)
    return [
        chat("c1", "central", "general", A, at(1, 8), wait=30, first=45, close=630, rating=5),
        chat("c2", "central", "general", A, at(1, 8, 20), wait=90, first=100, close=390, transfers=1, rating=3),
        chat("c3", "central", "lost-property", B, at(1, 9, 5), wait=10, first=70, close=1210, emergency=True,
             rating=4),
        chat("c4", "central", "general", None, at(1, 9, 30), close=120),                  # abandoned
        chat("c5", "central", "lost-property", B, at(2, 14), wait=300),                    # still active
        chat("n1", "north", "night", C, at(2, 23, 10), wait=60, first=60, close=240, transfers=2),
        chat("n2", "north", "night", None, at(2, 23, 50), close=30, rating=1),             # abandoned, rated
        chat("n3", "north", "night", None, at(3, 1)),                                      # still waiting
    ]


def test_nearest_rank_percentiles():
    assert percentile([], 50) is None
    assert percentile([7], 90) == 7
    assert percentile([300, 10, 90, 30, 60], 50) == 60 and percentile([300, 10, 90, 30, 60], 90) == 300
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9 and percentile(range(1, 11), 91) == 10


def test_overall_figures_are_exact():
    o = build(scripted(), DAY1, at(4, 0)).overall
    assert (o.chats, o.answered, o.closed, o.abandoned) == (8, 5, 6, 2)
    assert o.abandoned_rate == 2 / 6
    assert (o.wait_p50_s, o.wait_p90_s) == (60, 300)
    assert (o.first_response_p50_s, o.first_response_p90_s) == (60, 100)
    assert (o.handling_p50_s, o.handling_p90_s) == (300, 1200)
    assert (o.transfers, o.emergencies, o.rated, o.feedback_average) == (3, 1, 4, 3.25)


def test_figures_by_agency_topic_and_officer_are_exact():
    r = build(scripted(), DAY1, at(4, 0))
    central, north = r.by_agency["central"], r.by_agency["north"]
    assert (central.chats, central.wait_p50_s, central.wait_p90_s) == (5, 30, 300)
    assert (central.first_response_p50_s, central.first_response_p90_s) == (70, 100)
    assert (central.handling_p50_s, central.handling_p90_s, central.abandoned_rate) == (600, 1200, 0.25)
    assert (central.transfers, central.emergencies, central.feedback_average) == (1, 1, 4.0)
    assert (north.chats, north.wait_p50_s, north.handling_p90_s, north.abandoned_rate, north.transfers) == \
        (3, 60, 180, 0.5, 2)
    assert list(r.by_topic) == ["general", "lost-property", "night"]
    assert (r.by_topic["general"].chats, r.by_topic["general"].abandoned_rate) == (3, 1 / 3)
    assert (r.by_officer[A].wait_p50_s, r.by_officer[A].wait_p90_s) == (30, 90)
    assert (r.by_officer[B].wait_p50_s, r.by_officer[B].handling_p50_s) == (10, 1200)
    nobody = r.by_officer[UNANSWERED]
    assert (nobody.chats, nobody.answered, nobody.abandoned_rate, nobody.wait_p50_s, nobody.feedback_average) == \
        (3, 0, 1.0, None, 1.0)


def test_chats_per_hour_and_day():
    r = build(scripted(), DAY1, at(4, 0))
    assert {h: n for h, n in enumerate(r.hours) if n} == {1: 1, 8: 2, 9: 2, 14: 1, 23: 2}
    assert r.days == [("2026-11-02", 4), ("2026-11-03", 3), ("2026-11-04", 1)]
    assert build([], DAY1, at(2, 0)).days == [("2026-11-02", 0)]


def test_csv_has_the_same_figures_and_nothing_a_spreadsheet_would_run():
    rows = list(csv.reader(io.StringIO(csv_text(build(scripted(), DAY1, at(4, 0))))))
    assert rows[0] == ["section", "group", "figure", "value"]
    table = {(s, g, f): v for s, g, f, v in rows[1:]}
    assert table[("overall", "all", "wait_p50_s")] == "60"
    assert table[("overall", "all", "abandoned_rate")] == "0.3333"
    assert table[("overall", "all", "feedback_average")] == "3.25"
    assert table[("agency", "north", "handling_p90_s")] == "180"
    assert table[("officer", "'" + A, "chats")] == "2"                 # "@…" would be a formula in Excel
    assert table[("officer", UNANSWERED, "wait_p50_s")] == ""
    assert table[("hour", "08:00", "chats")] == "2" and table[("day", "2026-11-03", "chats")] == "3"


def test_bar_chart_is_plain_accessible_svg():
    svg = charts.bar_chart("Waiting time <p50>", ["central", "north"], [("p50", [30, 60]), ("p90", [300, None])],
                           unit=" s")
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<script" not in svg and "style=" not in svg
    assert "<title id=\"waiting-time-p50-t\">Waiting time &lt;p50&gt;</title>" in svg
    assert "central 30 s, north 60 s" in svg and "north none s" in svg
    assert svg.count('class="bar s0"') == 3 and svg.count('class="bar s1"') == 2     # bars + legend swatch


def test_the_store_gives_each_chats_facts(tmp_path):
    store = Store.open(tmp_path / "precinct.db")
    try:
        records = Records.open(example_config(tmp_path), store)
        a = store.chats.create("a", "ha", "general", "central", None, None)
        b = store.chats.create("b", "hb", "night", "north", None, None)
        old = store.chats.create("old", "ho", "general", "central", None, None)
        for chat, created, answered, closed in ((a, at(1, 8), at(1, 8) + 30 * S, at(1, 9)),
                                                (b, at(1, 10), None, None), (old, DAY1 - H, None, None)):
            store.db.execute("UPDATE chats SET created_ts = ?, answered_ts = ?, closed_ts = ?, officer = ?"
                             " WHERE id = ?", [created, answered, closed, A if answered else None, chat.id])
        store.messages.add(a.id, OFFICER, "text", "second", sender_mxid=A, ts=at(1, 8) + 90 * S)
        store.messages.add(a.id, OFFICER, "text", "first", sender_mxid=A, ts=at(1, 8) + 45 * S)
        records.chat_event(a.id, "transferred", A, to_agency="central")
        records.chat_event(a.id, "emergency", A)
        store.feedback.add(a.id, 4, None)
        got = facts(store.chats.report_facts(["central", "north"], DAY1, at(2, 0)))
        assert got == [ChatFacts("a", "central", "general", A, at(1, 8), at(1, 8) + 30 * S, at(1, 8) + 45 * S,
                                 at(1, 9), transfers=1, emergency=True, rating=4),
                       ChatFacts("b", "north", "night", None, at(1, 10))]
        assert facts(store.chats.report_facts(["north"], DAY1, at(2, 0)))[0].chat_id == "b"
        # Claimed by one officer, a supervisor joined first: the claimer is credited.
        store.db.execute("UPDATE chats SET claimed_by = ?, officer = ? WHERE id = 'a'", ["@claimer:p", A])
        assert facts(store.chats.report_facts(["central"], DAY1, at(2, 0)))[0].officer == "@claimer:p"
    finally:
        store.close()
