"""Parse the project's own source for tests that read the code (layers, audited actions).

On CPython 3.11.7 (the CI's Python) ``ast.parse`` failed once with ``SystemError: AST constructor
recursion depth mismatch`` while the garbage collector ran an aiohttp finaliser left by an earlier
test (the ``ClientResponse.__del__`` warning was raised in that very call; see python/cpython#106905
and pytest-dev/pytest#10763 for the family of bugs). Keep the collector off while parsing, so no
finaliser runs inside the AST constructor (collecting first cost 0.13 s a file after the integration
tests, 60 s over the suite)."""
from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_python(path: Path) -> ast.Module:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    finally:
        if was_enabled:
            gc.enable()
