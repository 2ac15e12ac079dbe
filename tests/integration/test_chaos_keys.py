"""CI's guards on bench/chaos_keys.py (issue 13; `make chaos` runs it full size): both room-key scenarios reduced
to one round of two chats, against the real bridge, Synapse and encrypted nio officers. The script exits 1 when a
criterion is missed; these tests refuse that and check the counts it prints (never timings).

The script starts and stops its own Synapse and bridge (by PID, in a ``finally``); each test runs it in a process
group of its own and kills that group if it overruns, so nothing outlives the test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import bench_runs

ROOT = Path(__file__).resolve().parents[2]
# The reduced runs (started in the background at collection: tests/support/bench_runs.py).
OUTAGE_KEYS = ("bench/chaos_keys.py", "--scenario", "outage-keys", "--rounds", "1", "--citizens", "2")
LATE_KEY = ("bench/chaos_keys.py", "--scenario", "late-key", "--rounds", "1", "--citizens", "2", "--late", "1")


def _scenario(*run: str) -> dict[str, Any]:
    return bench_runs.scenario_result(*run)


@pytest.mark.bench(OUTAGE_KEYS)
def test_reduced_keys_during_outage_leave_nothing_undecryptable():
    """The bridge down while each chat's officer writes from a new device (a rotated room session): after the
    restart every line each way arrives once, nothing is undecryptable, nobody is asked to send it again."""
    r = _scenario(*OUTAGE_KEYS)
    assert (r["to_citizens"], r["to_officers"]) == (4, 2), r
    assert r["delivered_once_to_citizens"] == 4 and r["delivered_once_to_officers"] == 2, r
    assert (r["undecryptable_at_end"], r["resend_requests"], r["wrong_at_citizen"]) == (0, 0, 0), r


@pytest.mark.bench(LATE_KEY)
def test_reduced_late_room_key_delivers_once_and_asks_only_when_it_never_comes():
    """A room key held back from the bridge and sent late: the line reaches its citizen once, in order, and
    nobody is asked to resend; a key held back for good brings a request, not before the wait, and never
    reaches the citizen; the citizen sees no ciphertext or error."""
    r = _scenario(*LATE_KEY)
    assert r["to_citizens"] == 4 and r["delivered_once_to_citizens"] == 4, r
    assert (r["chats_out_of_order"], r["undecryptable_at_end"], r["resend_requests"]) == (0, 0, 0), r
    assert r["never_key_request_after_s"] >= r["wait_s"], r
    assert (r["never_key_at_citizen"], r["wrong_at_citizen"]) == (0, 0), r
