"""Issue 13's WebSocket fuzz and token abuse, reduced, so that CI guards them (the full runs: `make chaos`).

Each runs the bench script against its own Synapse and bridge and reads the JSON line it ends with. What is
asserted here is what the bridge does (alive, every fuzz socket really upgraded, nothing leaked to a client
or its log, no credential accepted, every refusal the same as for an unknown chat); the script's figures
(memory, latency) are printed, not asserted (docs/reliability.md has the full runs').
"""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def _run(script: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout[-3000:])
    return json.loads(lines[-1])


def test_reduced_ws_fuzz_breaks_nothing_and_leaks_nothing():
    r = _run("ws_fuzz.py", "--frames", "150", "--floor-seconds", "3", "--seed", "11")
    assert r["alive"] and r["frames"] >= 150
    assert r["upgraded"] == r["connections"] - r["garbage"] and r["upgraded"] > 0
    assert r["leaked_n"] == 0 and r["log_alarms_n"] == 0


def test_reduced_token_abuse_accepts_nothing_and_refuses_alike():
    r = _run("token_abuse.py", "--rounds", "2")
    assert r["tries"] > 100 and r["accepted"] == 0 and r["all_same_as_reference"]
