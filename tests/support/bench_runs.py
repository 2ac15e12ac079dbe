"""The bench scripts CI runs reduced (the guards of `make abuse`, `make load`, `make chaos`), started in the
background as soon as the session has collected them, one at a time, so that their minutes overlap the rest of
the suite instead of adding to it; the guard tests come last in the session (tests/conftest.py), and each waits
for its own run and checks what it printed.

A guard test names its run with ``@pytest.mark.bench(RUN)`` (RUN: the script and its arguments) and gets its
output from ``output(*RUN)``. A run nobody planned (a test run on its own, or without the mark) is made there
and then, the same way. Every run is a process group of its own, killed if it overruns; the scripts stop their
own Synapse and bridge by PID.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 600          # seconds; each reduced run takes well under a minute alone

Run = tuple[str, ...]   # ("bench/script.py", "--arg", "value", ...)


def _execute(run: Run) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, *run], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        return -1, f"{' '.join(run)} overran {DEADLINE} s:\n{out}"
    return proc.returncode, out


class BackgroundRuns:
    """Planned runs, done one after another on a thread of their own."""

    def __init__(self) -> None:
        self._futures: dict[Run, Future] = {}
        self._queue: list[Run] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def plan(self, runs: list[Run]) -> None:
        with self._lock:
            for run in runs:
                if run not in self._futures:
                    self._futures[run] = Future()
                    self._queue.append(run)
            if self._queue and self._thread is None:
                self._thread = threading.Thread(target=self._work, name="bench-runs", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._stopping:
                    for run in self._queue:
                        self._futures[run].cancel()
                    self._queue.clear()
                    self._thread = None
                    return
                run = self._queue.pop(0)
                future = self._futures[run]
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(_execute(run))
                except BaseException as e:       # noqa: BLE001 — handed to the test that waits for it
                    future.set_exception(e)

    def result(self, run: Run) -> tuple[int, str]:
        with self._lock:
            future = self._futures.get(run)
        if future is None or future.cancelled():
            return _execute(run)
        return future.result(timeout=DEADLINE * (len(self._futures) + 1))

    def stop(self) -> None:
        """At the session's end: nothing new starts; the run under way finishes (bounded by its deadline)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout=DEADLINE + 60)


RUNS = BackgroundRuns()


def output(*run: str) -> str:
    """The run's output once it has ended with status 0 (planned in the background, or made now)."""
    code, out = RUNS.result(tuple(run))
    assert code == 0, out[-12000:]       # room for a failed run's explanation (kill_loop: explain_replies)
    return out


def scenario_result(*run: str) -> dict:
    """The JSON line a chaos scenario ends with, once it has ended with status 0 and missed no criterion."""
    import json
    out = output(*run)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["missed"] == [], out[-3000:]
    return result
