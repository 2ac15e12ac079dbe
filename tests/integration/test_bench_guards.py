"""CI's guard on `make abuse`: bench/abuse.py, reduced, still runs against the real bridge and Synapse,
and the floods are still refused the way docs/security.md says (counts, never timings).

The bench starts and stops its own Synapse and bridge (by PID, in a ``finally``); this test runs it in
a process group of its own and kills that group if it overruns, so nothing outlives the test.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support import bench_runs

ROOT = Path(__file__).resolve().parents[2]
# The reduced runs (started in the background at collection: tests/support/bench_runs.py).
ABUSE = ("bench/abuse.py", "--requests", "40", "--addresses", "3", "--in-flight", "10",
         "--message-frames", "60", "--typing-frames", "300", "--quick")
LOAD = ("bench/load.py", "--citizens", "8", "--rounds", "2", "--in-flight", "4", "--addresses", "4",
        "--idle-unload", "2")
CONNECTED = ("bench/load.py", "--connected", "12", "--active", "3", "--cycles", "2", "--messages", "1",
             "--addresses", "4", "--idle-unload", "2", "--restart", "kill")
KILL_LOOP = ("bench/kill_loop.py", "--citizens", "3", "--messages", "6", "--kills", "3")
LATENCY = ("bench/latency.py", "--visitors", "1,3", "--messages", "2")


def _outcomes(report: str, scenario: str) -> dict[str, int]:
    """``{"201 created": 5, "429 rate_limited": 35}`` from the report's line for one scenario."""
    line = next(l for l in report.splitlines() if l.startswith(f"{scenario}: "))
    counts = line[len(scenario) + 2:].split(";")[0]
    return {k: int(n) for k, n in (part.rsplit(": ", 1) for part in counts.split(", ") if ": " in part)}


def _run_bench(script: str, *args: str) -> str:
    """Its output after exit 0: run in the background from collection on when the test is marked with it
    (tests/support/bench_runs.py), else now; its own process group, killed if it overruns."""
    return bench_runs.output(script, *args)


@pytest.mark.bench(ABUSE)
def test_reduced_abuse_bench_runs_and_the_floods_are_refused():
    out = _run_bench(*ABUSE)

    one = _outcomes(out, "chat flood, 1 address")
    assert one.get("201 created", 0) <= 5 and one.get("429 rate_limited", 0) >= 35, one   # burst 5 per address
    many = _outcomes(out, "chat flood, 3 addresses")
    assert many.get("201 created", 0) <= 15 and many.get("429 rate_limited", 0) >= 25, many
    messages = _outcomes(out, "message flood, 1 citizen")
    assert messages.get("ack", 0) <= 25 and messages.get("error rate_limited", 0) >= 30, messages  # burst 20
    typing = re.search(r"^typing flood, 1 citizen: .*homeserver typing calls (\d+)", out, re.M)
    assert typing and int(typing.group(1)) <= 3, out[-3000:]
    # The legitimate citizen (its own address) got in during every flood, and /health never failed.
    for line in (l for l in out.splitlines() if "legitimate opens ok" in l):
        assert re.search(r"legitimate opens ok [1-9]\d*, refused/failed 0; /health failures 0", line), line


@pytest.mark.bench(LOAD)
def test_reduced_load_bench_runs_and_nothing_stays_per_chat():
    """bench/load.py, reduced: two rounds of citizens open, speak and close; every chat opens, every message
    is acknowledged, and after each round no crypto store file is open and no more puppet clients are
    loaded than when the round began (counts, never timings)."""
    out = _run_bench(*LOAD)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    for r in result["rounds"]:
        assert r["opened"] == 8 and not r["failed"] and r["acks"] == 16 and r["settled"], (r, out[-3000:])
        assert r["crypto_files"][2] == 0, r                                   # start, peak, after close
        assert r["live_clients"][2] <= r["live_clients"][0], r
    assert result["log"]["unexpected_errors"] == 0 and result["log"]["out_of_system_resource"] == 0, result


@pytest.mark.bench(CONNECTED)
def test_reduced_connected_load_runs_and_every_conversation_is_had():
    """bench/load.py --connected, reduced (about 50 s): citizens connected at once, some talking with a real nio
    officer who claims exactly those; every chat opens, every conversation goes both ways, and after each cycle
    no more puppet clients are loaded than when it began (counts, never timings). Each cycle the bridge is also
    SIGKILLed under every connected citizen and started again (--restart kill): every citizen's page comes back,
    what the officer wrote meanwhile reaches each citizen once, and each citizen's next line reaches the officer."""
    out = _run_bench(*CONNECTED)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    for r in result["rounds"]:
        assert r["opened"] == 12 and not r["failed"] and r["conversations"] == 3 and r["settled"], (r, out[-3000:])
        assert r["acks"] == 6 and r["rooms"] == 3, r                        # opening line + one reply each
        assert r["live_clients"][2] <= r["live_clients"][0], r
        restart = r["restart"]
        assert restart["how"] == "kill" and restart["connected"] == restart["back"] == 12, (restart, out[-3000:])
        assert restart["written_while_down"] == restart["delivered"] == 3 and restart["doubled"] == 0, restart
        assert restart["answered_after"] == 3, restart
        # Only refused while it was down: once it listened, no page was turned away (a 503, a timeout).
        assert set(restart["failed_attempts"]) <= {"ClientConnectorError"}, restart
    assert result["log"]["unexpected_errors"] == 0 and result["log"]["out_of_system_resource"] == 0, result


@pytest.mark.bench(KILL_LOOP)
def test_reduced_kill_loop_loses_doubles_and_reorders_nothing():
    """bench/kill_loop.py, reduced (issue 13; `make chaos` runs it full size): 3 citizens and 2 officers talk,
    6 messages each way per chat, while the bridge is SIGKILLed and restarted 3 times; counted from the clients'
    own view, nothing is lost or doubled either way and every chat keeps its order (the script exits 1
    otherwise, which _run_bench refuses). The one loss allowed is an officer's reply Synapse itself still holds
    unsent in a stranded appservice transaction (docs/reliability.md), named by event from Synapse's database.
    One of the two officers is on Element's client stack (matrix-js-sdk + Rust crypto): it gets chats (the
    routing gives each officer some) and reads and answers every line of them, counted like the nio officer."""
    out = _run_bench(*KILL_LOOP)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["kills"] == 3, out[-3000:]
    stacks = {o["client"]: o for o in result["officers"]}
    assert set(stacks) == {"matrix-nio", "matrix-js-sdk + Rust crypto"}, result["officers"]
    assert all(o["read"] > 0 and o["replied"] == o["read"] for o in result["officers"]), result["officers"]
    assert sum(o["read"] for o in result["officers"]) == 18, result["officers"]
    for way in ("to_officers", "to_citizens"):
        r = result[way]
        held = len(r.get("held_by_homeserver", []))
        assert (r["sent"], r["lost"] - held, r["duplicated"], r["chats_out_of_order"]) == (18, 0, 0, 0), (way, out[-3000:])


@pytest.mark.bench(LATENCY)
def test_reduced_latency_bench_measures_both_ways_against_a_fair_floor():
    """bench/latency.py, reduced (two rounds, 1 then 3 citizens, 2 messages each way; the figures are printed, never
    asserted): every message of the bridge and of the floor arrives and decrypts, both directions are judged against
    their targets, the notice and the claim are split at Synapse's stamp, and each round makes its own floor rooms
    (as chats are new each round) with no warm-up message in them before the measured ones."""
    out = _run_bench(*LATENCY)
    rows = re.findall(r"^\s+(\d+)\s+(visitor→officer|officer→visitor)\s+(\d+)\s+(\d+)\s.*(p50 ≤ floor\+\d+: \w+)",
                      out, re.M)
    assert sorted((n, way, sent, lost) for n, way, sent, lost, _ in rows) == [
        ("1", "officer→visitor", "2", "0"), ("1", "visitor→officer", "2", "0"),
        ("3", "officer→visitor", "6", "0"), ("3", "visitor→officer", "6", "0")], out[-3000:]
    assert "Undecryptable events seen by the test clients: officer 0, floor user 0" in out, out[-3000:]
    assert re.search(r"creating 1 floor rooms.*creating 3 floor rooms", out, re.S), out[-3000:]
    assert "warm-up" not in out, out[-3000:]
    for n in ("1", "3"):
        assert re.search(rf"^\s+{n}  notice: POST → chat stored .*→ Synapse stamped the notice", out, re.M), \
            out[-3000:]
        assert re.search(rf"^\s+{n}  claim: !claim sent → bridge took it", out, re.M), out[-3000:]
