"""The daily summary: when it is due, its exact text, and posting once per day per agency."""
from __future__ import annotations

import pytest

from bridge import config as cfg
from bridge.reports import summary
from bridge.reports.poster import SummaryPoster
from bridge.reports.report import build
from bridge.store import Store
from tests.unit.test_reports import DAY1, M, at, scripted
from tests.unit.test_webhooks import RecordingJournal


def test_due_after_the_time_once_per_day():
    assert summary.due_day(at(2, 5, 59), "06:00", None) is None
    assert summary.due_day(at(2, 6, 0), "06:00", None) == "2026-11-02"
    assert summary.due_day(at(2, 23, 0), "06:00", "2026-11-01") == "2026-11-02"
    assert summary.due_day(at(2, 23, 0), "06:00", "2026-11-02") is None
    assert summary.due_day(at(3, 0, 0), "00:00", "2026-11-02") == "2026-11-03"
    assert summary.seconds_until_next(at(2, 5, 0), "06:00") == 3600
    assert summary.seconds_until_next(at(2, 6, 0), "06:00") == 24 * 3600
    assert summary.seconds_until_next(at(2, 7, 30), "06:00") == 22.5 * 3600


def test_summary_text_is_exact():
    r = build([c for c in scripted() if c.agency == "central" and c.created_ts < at(2, 0)], DAY1, at(2, 0))
    text = summary.text("Central Police", "central", "2026-11-02", r.overall, r.hours, "https://chat.police.example/")
    assert text == (
        "Daily summary for Central Police, Monday 02 November 2026 (UTC)\n"
        "Chats: 4, answered 3; abandoned before answer: 1 of 4 closed (25%)\n"
        "Waiting time: p50 0:30, p90 1:30\n"
        "First response: p50 1:10, p90 1:40\n"
        "Handling time: p50 10:00, p90 20:00\n"
        "Transfers: 1; emergencies: 1\n"
        "Feedback: 4.00 average from 3 ratings\n"
        "Busiest hour: 08:00–09:00 (2 chats)\n"
        "Full report: https://chat.police.example/console/reports?from=2026-11-02&to=2026-11-02&agency=central")
    empty = build([], DAY1, at(2, 0))
    assert summary.text("North", "north", "2026-11-02", empty.overall, empty.hours, "http://x").splitlines()[1] == \
        "No chats."


@pytest.fixture
def poster_env(tmp_path):
    raw = {"homeserver": {"server_name": "police.example"},
           "appservice": {"as_token": "a" * 64, "hs_token": "b" * 64}, "crypto": {"pickle_key": "c" * 64},
           "agencies": [{"id": "central", "name": "Central Police", "officers": []},
                        {"id": "north", "name": "North Police", "officers": []}],
           "reports": {"summary_rooms": {"central": "!sup:police.example"}, "summary_time": "06:00"}}
    config = cfg.load(raw, tmp_path, {})
    store = Store.open(tmp_path / "precinct.db")
    chat = store.chats.create("c", "h", "general", "central", None, None)
    store.db.execute("UPDATE chats SET created_ts = ?, answered_ts = ? WHERE id = ?",
                     [at(1, 8), at(1, 8) + 30_000, chat.id])
    yield config, store
    store.close()


async def test_poster_posts_each_days_summary_once_and_retries_a_failure(poster_env):
    config, store = poster_env
    posted: list[tuple[str, str]] = []
    fail = [True]

    async def say(room: str, text: str) -> None:
        if fail[0]:
            raise RuntimeError("M_FORBIDDEN: not invited")
        posted.append((room, text))

    clock = [at(2, 5, 0) / 1000]
    journal = RecordingJournal()
    poster = SummaryPoster(config, store, journal, say, clock=lambda: clock[0])
    assert await poster.post_due() is False and posted == []            # before 06:00: nothing due
    clock[0] = at(2, 6, 1) / 1000
    assert await poster.post_due() is True and posted == []             # the room refused: try again later
    assert journal.audits[-1][:3] == ("report.summary_posted", "bridge", "failed")
    fail[0] = False
    assert await poster.post_due() is False
    assert len(posted) == 1 and posted[0][0] == "!sup:police.example"   # only the agency with a room
    assert posted[0][1].startswith("Daily summary for Central Police, Monday 02 November 2026")
    assert "Chats: 1, answered 1" in posted[0][1] and "p50 0:30" in posted[0][1]
    assert await poster.post_due() is False and len(posted) == 1        # not twice the same day
    clock[0] = (at(3, 6, 0) + M) / 1000
    await poster.post_due()
    assert len(posted) == 2 and "Tuesday 03 November 2026" in posted[1][1] and "No chats." in posted[1][1]
    assert [a[2] for a in journal.audits] == ["failed", "ok", "ok"]


def test_summary_rooms_are_validated(tmp_path):
    raw = {"homeserver": {"server_name": "p.example"}, "appservice": {"as_token": "a" * 64, "hs_token": "b" * 64},
           "crypto": {"pickle_key": "c" * 64}, "agencies": [{"id": "central", "name": "C", "officers": []}]}
    for rooms, named in (({"nowhere": "!a:b"}, "nowhere"), ({"central": "#alias:b"}, "room ID")):
        with pytest.raises(cfg.ConfigError) as e:
            cfg.load({**raw, "reports": {"summary_rooms": rooms}}, tmp_path, {})
        assert "reports.summary_rooms" in str(e.value) and named in str(e.value)
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load({**raw, "reports": {"summary_time": "25:00"}}, tmp_path, {})
    assert "reports.summary_time" in str(e.value)
