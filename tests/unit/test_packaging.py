"""What the installed package holds (issue 14): every package of the bridge, not the developer tools
(bridge/devtools: the demo and the tests' local Synapse, run from a checkout). Read the way setuptools
reads setup.cfg when it builds the wheel (building one here would need the network for its backend)."""
from __future__ import annotations

from pathlib import Path

from setuptools.config.setupcfg import read_configuration

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_takes_every_bridge_package_but_the_developer_tools(monkeypatch):
    monkeypatch.chdir(ROOT)
    packages = set(read_configuration(ROOT / "setup.cfg")["options"]["packages"])
    on_disk = {".".join(p.relative_to(ROOT).parts[:-1]) for p in (ROOT / "bridge").rglob("__init__.py")}
    assert on_disk - packages == {"bridge.devtools"}
    assert packages <= on_disk and "bridge.web" in packages
