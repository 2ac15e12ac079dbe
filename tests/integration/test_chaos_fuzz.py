"""Issue 13's WebSocket fuzz and token abuse, reduced, so that CI guards them (the full runs: `make chaos`).

Each runs the bench script against its own Synapse and bridge and reads the JSON line it ends with. What is
asserted here is what the bridge does (alive, every fuzz socket really upgraded, nothing leaked to a client
or its log, no credential accepted, every refusal the same as for an unknown chat); the script's figures
(memory, latency) are printed, not asserted (docs/reliability.md has the full runs').
"""
from __future__ import annotations

import json

import pytest

from tests.support import bench_runs


def _run(*run: str) -> dict:
    """The JSON line the run ended with (started in the background at collection: tests/support/bench_runs.py)."""
    code, out = bench_runs.RUNS.result(run)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, out[-3000:]
    print(out[-3000:])
    return json.loads(lines[-1])


# The reduced runs.
FUZZ = ("bench/ws_fuzz.py", "--frames", "150", "--floor-seconds", "3", "--seed", "11")
TOKENS = ("bench/token_abuse.py", "--rounds", "2")


@pytest.mark.bench(FUZZ)
def test_reduced_ws_fuzz_breaks_nothing_and_leaks_nothing():
    r = _run(*FUZZ)
    assert r["alive"] and r["frames"] >= 150
    assert r["upgraded"] == r["connections"] - r["garbage"] and r["upgraded"] > 0
    assert r["leaked_n"] == 0 and r["log_alarms_n"] == 0


@pytest.mark.bench(TOKENS)
def test_reduced_token_abuse_accepts_nothing_and_refuses_alike():
    r = _run(*TOKENS)
    assert r["tries"] > 100 and r["accepted"] == 0 and r["all_same_as_reference"]
