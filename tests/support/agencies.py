"""Agencies of a test's own in the session's bridge, for tests whose assertions need a quiet queue.

The integration tests share one bridge (tests/conftest.py). Chats other tests leave waiting, claim or close in a
shared agency move its queue, its places, its estimates, its re-alerts and its counts. A test that asserts any of
those marks itself ``@pytest.mark.agency(**settings)`` and takes the ``agency`` fixture: an agency nobody else
uses, with one topic and officers of its own, added to the session bridge's configuration before it starts.

Only the tests collected in a run get one (planned at collection, like the bench runs of bench_runs.py), so a run
of one file pays for its own agencies only: each costs the bridge a dispatch room and Synapse an account per
officer at the session's start.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

MARKER = "agency"
# What a shared agency of the suite has too (tests/conftest.py): old chats never hit a cap, and an officer who
# signs out holding chats does not have them handed on, unless the test's settings say otherwise.
DEFAULTS: dict = {"max_chats_per_officer": 1000, "timeouts": {"officer_absent_seconds": 0}}


@dataclass(frozen=True)
class OwnAgency:
    """One test's agency: its id, its one topic (``topic``, shown as ``label``) and its officers' user IDs."""
    id: str
    topic: str
    label: str
    officers: tuple[str, ...]
    settings: dict = field(default_factory=dict, hash=False)

    def agency_entry(self) -> dict:
        """The agency as the bridge's configuration lists it."""
        timeouts = {**DEFAULTS["timeouts"], **self.settings.get("timeouts", {})}
        return {"id": self.id, "name": f"{self.label} Police", "officers": list(self.officers),
                **DEFAULTS, **self.settings, "timeouts": timeouts}

    def topic_entry(self) -> dict:
        return {"id": self.topic, "label": self.label, "agency": self.id}


class Plan:
    """The own agencies of the tests collected in this run, by test node ID."""

    def __init__(self) -> None:
        self.by_test: dict[str, OwnAgency] = {}

    def plan(self, items: list[pytest.Item], server: str) -> None:
        for item in items:
            mark = item.get_closest_marker(MARKER)
            if mark is None or item.nodeid in self.by_test:
                continue
            settings = dict(mark.kwargs)
            officers = int(settings.pop("officers", 1))
            n = len(self.by_test) + 1
            slug = re.sub(r"[^a-z0-9]+", "-", item.name.lower().removeprefix("test_"))[:24].strip("-")
            id = f"own{n}-{slug}"
            label = settings.pop("label", f"Own desk {n}")
            self.by_test[item.nodeid] = OwnAgency(
                id, id, label, tuple(f"@{id}-officer{k}:{server}" for k in range(1, officers + 1)), settings)

    @property
    def agencies(self) -> list[OwnAgency]:
        return list(self.by_test.values())

    def of(self, item: pytest.Item) -> OwnAgency:
        try:
            return self.by_test[item.nodeid]
        except KeyError:
            raise pytest.UsageError(f"{item.nodeid} takes the agency fixture without @pytest.mark.agency(...)")


PLAN = Plan()
