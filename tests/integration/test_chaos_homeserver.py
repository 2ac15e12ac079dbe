"""CI's guards on bench/chaos_homeserver.py (issue 13; `make chaos` runs it full size): each homeserver scenario,
reduced to a few tens of seconds, against the real bridge, Synapse and encrypted nio officers. The script exits 1
when a criterion is missed; these tests refuse that and check the counts it prints (never timings).

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
RESTART = ("bench/chaos_homeserver.py", "--scenario", "restart", "--citizens", "2", "--before", "3", "--down", "10", "--after", "3")
OUTAGE = ("bench/chaos_homeserver.py", "--scenario", "outage", "--citizens", "2", "--down", "10", "--every", "2", "--compare")
COLD_START = ("bench/chaos_homeserver.py", "--scenario", "cold-start", "--citizens", "2", "--messages", "3", "--down", "8")


def _scenario(*run: str) -> dict[str, Any]:
    return bench_runs.scenario_result(*run)


def _nothing_lost(result: dict[str, Any], sent: int | None = None) -> None:
    for way in ("to_officers", "to_citizens"):
        r = result[way]
        assert (r["lost"], r["duplicated"], r["chats_out_of_order"]) == (0, 0, 0), (way, result)
        assert r["sent"] > 0 and (sent is None or r["sent"] == sent), (way, result)


@pytest.mark.bench(RESTART)
def test_reduced_homeserver_restart_under_traffic_loses_nothing():
    """Synapse stopped for 10 s while two citizens write 2 messages a second and the officers answer (one on
    matrix-nio, one on matrix-js-sdk + Rust crypto, Element's stack): every message written meanwhile is
    acknowledged and delivered once, in order, each way, counted from both clients' view; /health says
    homeserver_unreachable while it is down and ok after."""
    result = _scenario(*RESTART)
    _nothing_lost(result)
    assert {o["client"] for o in result["officers"]} == {"matrix-nio", "matrix-js-sdk + Rust crypto"}, result
    assert all(o["read"] > 0 and o["replied"] == o["read"] for o in result["officers"]), result["officers"]
    assert result["written_while_down"] > 0, result
    assert set(result["health_while_down"]) == {"homeserver_unreachable"}, result
    assert result["health_ok_after_back_s"] is not None, result


@pytest.mark.bench(OUTAGE)
def test_reduced_long_bridge_outage_delivers_the_backlog_in_order():
    """The bridge killed for 10 s, twice (start-up ping on, then off), while each chat's officer writes every
    2 s: every line reaches its citizen once and in order both times."""
    result = _scenario(*OUTAGE)
    assert [r["ping"] for r in result["rounds"]] == [True, False], result
    for r in result["rounds"]:
        assert r["written"] >= 2 * 3 and (r["lost"], r["duplicated"], r["chats_out_of_order"]) == (0, 0, 0), r
        assert r["drained"] and r["recovery_s"] is not None, r


@pytest.mark.bench(COLD_START)
def test_reduced_homeserver_unreachable_at_start_serves_and_delivers():
    """The bridge starts 8 s before Synapse: the page is served, two citizens open chats and write three lines
    each, all acknowledged, /health says homeserver_unreachable; once Synapse comes every line reaches an
    officer once and in order, and every reply its citizen."""
    result = _scenario(*COLD_START)
    _nothing_lost(result, sent=6)
    assert result["page_status"] == 200 and result["acked_before_homeserver"] == 6, result
    assert set(result["health_before"]) == {"homeserver_unreachable"}, result
    assert result["health_ok_after_synapse_start_s"] is not None, result
