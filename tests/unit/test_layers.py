"""The package's layers only point down (issue 14): walks every import in bridge/ and fails on an arrow
that points up, or across between packages of the same layer (web and officers, say).

    layer 10 __main__       the command line
    layer 9  devtools       run from a checkout, left out of the wheel: the demo (its own bridge and
                            homeserver) and the local Synapse of the demo, tests and benchmarks
    layer 8  app            the bridge wired together
    layer 7  console        (officers' and supervisors' web console, reports on the web)
    layer 6  edges          appservice, officers, web, webhooks, reports
    layer 5  chats          the chat domain: life cycle, inbound/outbound, queue, hub
    layer 4  records        hash-chained records, signing, retention
    layer 3  matrix         homeserver API, crypto, puppets, rooms
    layer 2  store          SQLite, one module per table family
    layer 1  config, journal  the schema and its loading; the Journal interface everything records through
    layer 0  utilities      background, client_address, client_input, limits, metrics, private_files,
                            resources, text_lines, __version__

A package may import its own modules, anything in a lower layer, and nothing else. Run:
    .venv/bin/python -m pytest tests/unit/test_layers.py -q
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.support.source import parse_python

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"

LAYERS: dict[str, int] = {
    **dict.fromkeys(["background", "client_address", "client_input", "limits", "metrics", "private_files",
                     "resources", "text_lines", "__version__", "__init__"], 0),
    "config": 1, "journal": 1, "store": 2, "matrix": 3, "records": 4, "chats": 5,
    **dict.fromkeys(["appservice", "officers", "web", "webhooks", "reports"], 6),
    "console": 7,
    "app": 8, "devtools": 9, "__main__": 10,
}


def _unit(parts: tuple[str, ...]) -> str:
    """The package (or top-level module) a path inside bridge/ belongs to."""
    return parts[0].removesuffix(".py")


def imports() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import of a bridge module, TYPE_CHECKING ones too."""
    found = []
    for path in sorted(BRIDGE.rglob("*.py")):
        rel = path.relative_to(BRIDGE)
        here = _unit(rel.parts)
        for node in ast.walk(parse_python(path)):
            targets: list[tuple[str, ...]] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = rel.parts[:-1][:len(rel.parts) - node.level]
                module = tuple(node.module.split(".")) if node.module else ()
                targets = [base + module] if base or module else [(a.name,) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bridge":
                targets = [tuple(node.module.split(".")[1:]) or (node.names[0].name,)]
            elif isinstance(node, ast.Import):
                targets = [tuple(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "bridge"]
            for target in targets:
                if target:
                    found.append((here, _unit(target), f"{rel}:{node.lineno}"))
    return found


def test_every_unit_has_a_layer():
    units = {_unit(p.relative_to(BRIDGE).parts) for p in BRIDGE.rglob("*.py")}
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_imports_only_point_down():
    wrong = [f"{where}: {here} (layer {LAYERS[here]}) imports {there} (layer {LAYERS[there]})"
             for here, there, where in imports()
             if there != here and there in LAYERS and LAYERS[there] >= LAYERS[here]]
    assert not wrong, "imports that point up or across a layer:\n" + "\n".join(wrong)


def test_the_walk_sees_imports():
    """The check above would pass on a walk that found nothing: it must see the arrows that exist."""
    seen = {(here, there) for here, there, _ in imports()}
    assert {("chats", "store"), ("web", "chats"), ("officers", "matrix"), ("app", "web")} <= seen


def test_client_server_paths_are_spelled_only_in_cs_api():
    """Requests to the homeserver are built in bridge/matrix/cs_api.py alone (docstrings aside; the demo's
    local homeserver, the routes of its worker topology's router and the appservice's own routes are not
    requests the bridge makes)."""
    allowed = {Path("matrix/cs_api.py"), Path("devtools/demo.py"), Path("devtools/localhs.py"),
               Path("devtools/workers.py")}
    found = []
    for path in sorted(BRIDGE.rglob("*.py")):
        rel = path.relative_to(BRIDGE)
        if rel in allowed:
            continue
        tree = parse_python(path)
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and ("/_matrix/client" in node.value or "/_matrix/media" in node.value):
                found.append(f"{rel}:{node.lineno}: {node.value[:60]}")
    assert not found, "client-server paths outside matrix/cs_api.py:\n" + "\n".join(found)
