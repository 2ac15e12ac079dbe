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


def test_every_package_the_installed_bridge_imports_is_a_declared_dependency(monkeypatch):
    """A development venv holds Synapse and its dependencies, so a module the bridge imports can be there
    without setup.cfg naming it — and missing for an operator (the offline install found `cryptography`)."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    from tests.support.source import parse_python

    monkeypatch.chdir(ROOT)
    declared = {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower().replace("_", "-")
                for r in read_configuration(ROOT / "setup.cfg")["options"]["install_requires"]}
    providers = packages_distributions()
    undeclared = set()
    for path in (ROOT / "bridge").rglob("*.py"):
        if "devtools" in path.parts:
            continue
        for node in ast.walk(parse_python(path)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "bridge":
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    undeclared.add(f"{top} ({', '.join(sorted(dists))}) in {path.relative_to(ROOT)}")
    assert not undeclared, sorted(undeclared)
