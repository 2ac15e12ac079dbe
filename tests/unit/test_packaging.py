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


def test_no_two_test_modules_share_a_name_where_pytest_would_mix_them_up():
    """tests/unit, tests/integration and tests/federation are not packages, so pytest imports their modules
    by bare name: a second test_x.py in another of them stops the whole run at collection (as CI once did)."""
    seen: dict[str, Path] = {}
    clashes = []
    for folder in ("unit", "integration", "federation"):
        for path in sorted((ROOT / "tests" / folder).glob("test_*.py")):
            if path.name in seen:
                clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
            seen.setdefault(path.name, path)
    assert clashes == []
