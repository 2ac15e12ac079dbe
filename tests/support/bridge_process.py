"""Run the bridge as a real subprocess (so tests can kill -9 it), always stopped by PID."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml


class BridgeProcess:
    def __init__(self, config_path: Path, public_url: str, log_path: Path, open_files: int | None = None) -> None:
        """``open_files``: run the bridge with this open-files limit, soft and hard (so it cannot raise it)."""
        self.config_path, self.public_url, self.log_path = config_path, public_url, log_path
        self.open_files = open_files
        self.proc: subprocess.Popen | None = None

    def _limits(self) -> None:
        if self.open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def start(self, timeout: float = 60, *, ready: bool = True, env: dict[str, str] | None = None) -> None:
        """Until /health says ok; ``ready=False``: until it answers at all (a bridge whose homeserver is not
        there yet serves citizens and answers 503). ``env``: added to the environment (PRECINCT_* overrides)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
                                     env={**os.environ, **env} if env else None,
                                     preexec_fn=self._limits if self.open_files is not None else None)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.public_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if not ready:
                    return
                e.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"bridge not ready after {timeout}s:\n{self.tail()}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def open_fds(self) -> int:
        """How many file descriptors the bridge process has open now (read from /proc)."""
        assert self.proc
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def kill9(self) -> None:
        assert self.proc
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class BridgeEnv:
    """What tests read of a test bridge from its folder and config, under the same names for every bridge of the
    suite (the session's MatrixEnv, and pow_bridge, limited, lowfd, proxied, federation): mixed into their
    dataclasses, which have ``dir`` and ``config``."""
    dir: Path
    config: dict

    @property
    def public_url(self) -> str:
        return self.config["web"]["public_url"]

    @property
    def agency_site(self) -> str:
        """Origin of the agency's own website, allowed to embed the chat."""
        return self.config["web"]["embed_origins"][0]

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.config['metrics']['port']}/metrics"

    @property
    def db_path(self) -> Path:
        return self.dir / "precinct.db"


def prepared(dir: Path, open_files: int | None = None) -> tuple[Path, dict, BridgeProcess]:
    """A bridge prepared in ``dir`` (configs.write_registered): its config's path, the config, and its process,
    not started."""
    config_path = dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    return config_path, config, BridgeProcess(config_path, config["web"]["public_url"], dir / "bridge.log",
                                              open_files=open_files)
