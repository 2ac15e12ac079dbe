"""The whole air-gapped kit, checked as an offline machine would use it (issue 12; ``make test-wheelhouse``).

    python -m bridge.devtools.offline_check WHEELHOUSE [TEST ...]

A copy of this checkout's tracked files and a copy of the kit go to a scratch folder; there, with pip's index
and npm's proxies on a closed loopback port, no pip or npm configuration and a fresh HOME (so neither pip's nor
npm's usual cache is read), ``make install node browser WHEELHOUSE=…`` installs the project with the tests' extras
(Synapse, Playwright) and both Node folders, a package the kit lacks is shown not to install, and the given tests
(by default one each that needs Synapse and the demo, the Node client stack and the browser packages) run from
that copy's venv. Exits 1 on the first failure. ``make test`` runs a reduced check (the runtime part only:
tests/integration/test_offline_install.py).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TESTS = ["tests/integration/test_demo.py", "tests/integration/test_interop_element_stack.py",
                 "tests/browser/test_accessibility.py"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(home: Path) -> dict[str, str]:
    closed = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith(("pip_", "npm_config_", "virtual_env")) and k not in ("PYTHONPATH",)}
    env.update({"PIP_INDEX_URL": closed + "/simple", "PIP_NO_CACHE_DIR": "1", "PIP_CONFIG_FILE": os.devnull,
                "npm_config_proxy": closed, "npm_config_https_proxy": closed, "HOME": str(home)})
    return env


def verify_sums(kit: Path) -> None:
    for line in (kit / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if hashlib.sha256((kit / name).read_bytes()).hexdigest() != digest:
            raise SystemExit(f"FAIL: {name} does not match SHA256SUMS")


def step(what: str, cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> float:
    print(f"-- {what}: {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, timeout=timeout)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"FAIL: {what} (exit {done.returncode}, {took:.0f} s)")
    print(f"   {what}: ok, {took:.1f} s", flush=True)
    return took


def check(kit: Path, tests: list[str]) -> None:
    verify_sums(kit)
    with tempfile.TemporaryDirectory(prefix="precinct-offline-") as scratch:
        work, copy, home = Path(scratch) / "checkout", Path(scratch) / "wheelhouse", Path(scratch) / "home"
        home.mkdir()
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for name in filter(None, tracked.decode().split("\0")):
            if (ROOT / name).is_file():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, work / name)
        shutil.copytree(kit, copy)                    # npm writes into its cache even offline
        env = offline_env(home)
        step("install from the kit", ["make", "install", "node", "browser", f"WHEELHOUSE={copy}"], work, env, 900)
        python = str(work / ".venv" / "bin" / "python")
        print("-- a package the kit lacks does not install", flush=True)
        missing = subprocess.run([python, "-m", "pip", "install", "--find-links", str(copy / "python"),
                                  "left-pad-that-is-not-here"], cwd=work, env=env, capture_output=True, timeout=120)
        if missing.returncode == 0:
            raise SystemExit("FAIL: pip installed a package the kit does not hold: an index was reachable")
        step("tests from the offline install", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
             work, env, 1800)
    print("offline check passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.devtools.offline_check", description=__doc__.split("\n")[0])
    parser.add_argument("wheelhouse", type=Path)
    parser.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    args = parser.parse_args(argv)
    check(args.wheelhouse.resolve(), args.tests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
