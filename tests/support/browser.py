"""Debian's Chromium (/usr/bin/chromium), started once per test session and driven by Playwright over CDP.

Playwright never downloads a browser here: we start the system Chromium ourselves (so we hold its
PID and stop it by that PID), headless, with its DevTools endpoint on a loopback port that it picks,
and every test connects Playwright to it and opens a fresh browser context of its own.

Why not ``chromium.launch(executable_path=…)`` in a session fixture: Playwright's async objects
belong to the event loop that made them, and the tests' async fixtures (the encrypted officer) run
in a loop per test, so one Playwright connection can't serve the whole session. Connecting over CDP
per test costs about half a second and keeps one browser for all of them.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
# The rest keep a test browser quiet and predictable: no first-run UI, no throttled background tabs.
QUIET = ["--headless", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
         "--disable-backgrounding-occluded-windows", "--password-store=basic", "--use-mock-keychain",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


class ChromiumProcess:
    """``start()`` → ``cdp_url`` (http://127.0.0.1:PORT); ``stop()`` ends it by its PID."""

    def __init__(self, profile_dir: Path, log_path: Path) -> None:
        self.profile_dir, self.log_path = profile_dir, log_path
        self.proc: subprocess.Popen | None = None
        self.cdp_url = ""

    def start(self, timeout: float = 60) -> str:
        if not CHROMIUM.exists():
            raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.profile_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        # Its own process group, so its helpers (zygote, renderers) can be found again by that id.
        self.proc = subprocess.Popen([str(CHROMIUM), *ARGS, *QUIET, f"--user-data-dir={self.profile_dir}",
                                      "about:blank"], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                port = port_file.read_text().splitlines()[0].strip()
            except (OSError, IndexError):
                port = ""
            if port.isdigit():
                self.cdp_url = f"http://127.0.0.1:{port}"
                return self.cdp_url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"chromium gave no DevTools port after {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        if self.proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Helpers still alive in the group we created for it (normally none): end them too.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None
        shutil.rmtree(self.profile_dir, ignore_errors=True)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
