"""One benchmark run against each homeserver topology asked for (--homeserver single|postgres|workers|both), the
topologies then compared side by side: what bench/latency.py and bench/load.py both do."""
from __future__ import annotations

from typing import Callable, TypeVar

Rounds = TypeVar("Rounds")
TOPOLOGIES = ("single", "workers")           # what "both" runs; "postgres" is asked for by name


def each(choice: str, run: Callable[[str], tuple[int, str, Rounds]],
         compare: Callable[[dict[str, tuple[str, Rounds]]], None]) -> int:
    """``run(kind)`` for each topology of ``choice`` (``both``: one after the other, stopping at the first
    that fails), ``compare`` over their (description, rounds) once more than one ran; the last status."""
    kinds = list(TOPOLOGIES) if choice == "both" else [choice]
    results: dict[str, tuple[str, Rounds]] = {}
    status = 0
    try:
        for kind in kinds:
            status, description, rounds = run(kind)
            results[kind] = (description, rounds)
            if status:
                break
    finally:
        if len(results) > 1:
            compare(results)
    return status
