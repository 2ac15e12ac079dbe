"""An air-gapped install works (issue 12): from the kit `make` gathered (bridge/devtools/wheelhouse.py,
tests/artifacts/offline-kit), a fresh virtualenv gets Precinct and everything it needs with every package
index unreachable, npm installs a lockfile's packages with no registry, and the bridge installed so — not
this checkout — starts against a real Synapse, serves the citizen page and takes a citizen's message.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from bridge.devtools.localhs import LocalSynapse, free_port
from tests.conftest import ROOT, SERVER, write_bridge_config
from tests.support.visitor import Visitor
from tests.support.waiting import until

KIT = ROOT / "tests" / "artifacts" / "offline-kit"


def _unreachable_indexes(tmp_path: Path) -> dict[str, str]:
    """An environment in which pip and npm can reach no index: pip's index and npm's proxies are a closed loopback
    port (npm keeps its registry URL: its cache is keyed by it; --offline and the proxies keep it off the network)."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith(("pip_", "npm_config_"))}
    env.update({"PIP_INDEX_URL": closed + "/simple", "PIP_NO_CACHE_DIR": "1", "PIP_CONFIG_FILE": os.devnull,
                "npm_config_proxy": closed, "npm_config_https_proxy": closed,
                "HOME": str(tmp_path / "home"), "PYTHONPATH": ""})
    (tmp_path / "home").mkdir()
    return env


def test_the_kit_is_whole():
    assert (KIT / ".built").exists(), "tests/artifacts/offline-kit is made by `make test` (or: make tests/artifacts/offline-kit/.built)"
    sums = (KIT / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith(".whl") and "/precinct-" in line for line in sums)
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((KIT / name).read_bytes()).hexdigest() == digest, name
    assert "python3-venv" in (KIT / "debian-packages.txt").read_text()
    # Compiled wheels fit one Python version: the operator's instructions say which.
    assert f"CPython {sys.version_info.major}.{sys.version_info.minor} on " in (KIT / "INSTALL.md").read_text()


async def test_precinct_installs_and_runs_with_every_index_unreachable(tmp_path: Path):
    env = _unreachable_indexes(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(KIT / "python"),
                              "precinct"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    # The same pip, asked for something the kit lacks, fails: nothing came from an index.
    missing = subprocess.run([str(python), "-m", "pip", "install", "--find-links", str(KIT / "python"),
                              "left-pad-that-is-not-here"], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode != 0
    where = subprocess.run([str(python), "-c", "import bridge; print(bridge.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where                    # the installed package, not this checkout

    node = tmp_path / "node"
    node.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(ROOT / "tests" / "browser" / name, node / name)
    cache = shutil.copytree(KIT / "npm", tmp_path / "npm-cache")     # npm writes to its cache even offline
    npm = subprocess.run(["npm", "ci", "--offline", "--cache", str(cache), "--no-audit", "--no-fund"],
                         env=env, cwd=node, capture_output=True, text=True, timeout=300)
    assert npm.returncode == 0, npm.stdout + npm.stderr
    assert (node / "node_modules" / "axe-core" / "axe.min.js").exists()

    # The installed bridge, from its own venv and a folder outside the checkout, against a real Synapse.
    hs_port = free_port()
    config_path, config = write_bridge_config(tmp_path, f"http://127.0.0.1:{hs_port}")
    registration = tmp_path / "registration.yaml"
    subprocess.run([str(python), "-m", "bridge", "generate-registration", "-c", str(config_path), "-o",
                    str(registration)], env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    url = yaml.safe_load(config_path.read_text())["web"]["public_url"]
    synapse = LocalSynapse(tmp_path / "synapse", SERVER, hs_port, [registration])
    log = open(tmp_path / "bridge.log", "ab")
    bridge: subprocess.Popen | None = None
    visitor = Visitor(url)
    try:
        synapse.start()
        bridge = subprocess.Popen([str(python), "-m", "bridge", "run", "-c", str(config_path)], env=env,
                                  cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            assert bridge is not None and bridge.poll() is None, (tmp_path / "bridge.log").read_text()
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        await until(healthy, 120, "the installed bridge ready with its homeserver")
        with urllib.request.urlopen(url + "/chat", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()     # the page came with the wheel
        await visitor.create(topic="general")
        await visitor.connect()
        assert (await visitor.send("written to a bridge installed offline"))["type"] == "ack"
    finally:
        await visitor.close()
        if bridge is not None and bridge.poll() is None:
            bridge.send_signal(signal.SIGTERM)
            try:
                bridge.wait(timeout=20)
            except subprocess.TimeoutExpired:
                bridge.kill()
                bridge.wait(timeout=10)
        log.close()
        synapse.stop()
