"""Repeated refusals from one source (bridge/records/refusals.py): the first on record at once, the repeats
as one entry per window with their count; the address only as a salted daily hash; memory bounded."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.records import Records, refusals
from bridge.records.signing import Signer
from bridge.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path: Path):
    store = Store.open(tmp_path / "precinct.db")
    records = Records(store, Signer.load_or_create(tmp_path / "key"), refusal_window_seconds=600)
    clock = Clock()
    records.refusals.clock = clock
    yield store, records, clock
    store.close()


def entries(records: Records, action: str) -> list[dict]:
    return [e for e in records.trail.entries() if e["action"] == action]


def test_a_flood_from_one_source_is_two_entries_per_window_and_keeps_its_count(env):
    store, records, clock = env
    for _ in range(500):
        records.refused("console.sign_in", "unknown", "failed", source="203.0.113.7", origin="console",
                        reason="unknown")
        clock.now += 1
    first = entries(records, "console.sign_in")
    assert len(first) == 1 and "repeats" not in first[0]["details"]          # the first, at once
    assert first[0]["outcome"] == "failed" and first[0]["origin"] == "console"
    assert "203.0.113.7" not in str(store.db.rows("SELECT * FROM audit_log"))  # never the address
    assert len(first[0]["details"]["source"]) == 64                            # its salted hash
    assert records.refusals.flush() == 0                                        # +500 s: the window is open
    assert len(entries(records, "console.sign_in")) == 1
    clock.now += 100                                                            # now +600 s: it has ended
    assert records.refusals.flush() == 1
    summary = entries(records, "console.sign_in")[-1]
    assert summary["details"]["repeats"] == 499 and summary["details"]["window_seconds"] == 600
    assert summary["details"]["source"] == first[0]["details"]["source"]
    assert summary["details"]["first_ts"] < summary["details"]["last_ts"]
    assert len(entries(records, "console.sign_in")) == 2
    assert records.trail.verify() is None                                      # the chain still verifies
    # The next refusal starts a new window: on record at once again.
    records.refused("console.sign_in", "unknown", "failed", source="203.0.113.7", origin="console", reason="unknown")
    assert len(entries(records, "console.sign_in")) == 3


def test_sources_reasons_and_targets_are_counted_apart(env):
    _, records, clock = env
    for source in ("203.0.113.7", "198.51.100.1"):
        for reason in ("chat_open", "legal_hold"):
            for _ in range(3):
                records.refused("chat.erase", "visitor", source=source, target="chat-1", origin="web", reason=reason)
    records.refused("chat.erase", "visitor", source="203.0.113.7", target="chat-2", origin="web", reason="chat_open")
    assert len(entries(records, "chat.erase")) == 5
    assert records.refusals.flush(everything=True) == 5            # at a stop, open windows are written
    summaries = [e for e in entries(records, "chat.erase") if "repeats" in e["details"]]
    assert sorted(e["details"]["repeats"] for e in summaries) == [2, 2, 2, 2]
    assert records.refusals.next_due() is None


def test_a_single_refusal_is_one_entry_and_nothing_more(env):
    _, records, clock = env
    records.refused("chat.create", "visitor", source="203.0.113.7", origin="web", reason="chats_per_address")
    assert records.refusals.next_due() == pytest.approx(600)
    clock.now += 600
    assert records.refusals.flush() == 1
    assert len(entries(records, "chat.create")) == 1


def test_beyond_max_sources_the_rest_share_one_tally(env, monkeypatch):
    _, records, clock = env
    monkeypatch.setattr(refusals, "MAX_SOURCES", 3)
    for i in range(10):
        for _ in range(2):
            records.refused("chat.create", "visitor", source=f"198.51.100.{i}", origin="web", reason="chats_overall")
    written = entries(records, "chat.create")
    assert len(written) == 4 and written[-1]["details"]["source"] == refusals.OTHERS
    assert len(records.refusals) == 4
    records.refusals.flush(everything=True)
    others = [e for e in entries(records, "chat.create") if e["details"]["source"] == refusals.OTHERS]
    assert others[-1]["details"]["repeats"] == 13                  # 7 sources × 2, less the first


def test_without_a_source_the_refusals_are_still_counted(env):
    _, records, _ = env
    for _ in range(3):
        records.refused("chat.erase", "cli", target="chat-9", origin="cli", reason="legal_hold", source=None)
    records.refusals.flush(everything=True)
    assert [e["details"].get("repeats") for e in entries(records, "chat.erase")] == [None, 2]
