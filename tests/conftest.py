"""Fixtures: a real Synapse on a free loopback port and the real bridge process, once per session.

The homeserver is one Synapse process on SQLite, or with ``PRECINCT_HOMESERVER=workers`` (``make test-workers``)
Synapse as production runs it: PostgreSQL, Redis, workers, nginx in front (bridge/devtools/workers.py).

The registration Synapse loads is the output of ``python -m bridge
generate-registration``, so every integration test also shows Synapse accepts it.

Shared state: every test on the session bridge meets the chats of the tests before it in the shared agencies
below ("central" above all). A test whose assertions need a quiet queue — its places or estimate, who gets
auto-assigned, what is re-alerted or closed for waiting, counts of waiting chats or of the agency's figures —
does not use them: it marks itself ``@pytest.mark.agency(**settings)`` and takes the ``agency`` fixture, an
agency of its own with one topic and its own officers (tests/support/agencies.py; ``officer_of(agency.officers[0])``
starts one). Do that for every new test of the queue; tests/README.md says more.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bridge.devtools.localhs import LocalSynapse, free_port
from bridge.devtools.workers import homeserver_class
from tests.support.bridge_process import BridgeEnv, BridgeProcess
from tests.support.configs import crypto_section
from tests.support import agencies, bench_runs, limited, lowfd, pow_bridge, proxied, restorable, supervisor_room
from tests.support.officer import NioOfficer, OfficerPool
from tests.support.visitor import Visitor

ROOT = Path(__file__).parents[1]
SERVER = "localhost"
PASSWORD = "officer-password-1"
ATTACHMENT_LIMIT = 3 * 1024 * 1024      # 2 MB files fit (issue 10 round trips); Synapse allows 50 MB
# The shared agencies. Tests of the queue (routing, timers, places, full queues) have their own: see above.
OFFICERS = {"central": "officer1", "nightshift": "officer2", "interop": "jsofficer", "hooked": "hookofficer",
            "closed": "officer6"}
SUPERVISOR = "supervisor1"                 # supervises the "hooked" agency (console tests)
WEBHOOK_SECRET = "webhook-secret-of-the-hooked-agency-0123456789"   # the "hooked" agency's chats send webhooks
SERGEANT = "sergeant1"                     # supervises central and own agencies that list him (alerts mention them)
# Users who are not officers of the agency they try to act in.
OTHERS = {"intruder": "intruder"}
TEST_AGENCY_SETTINGS = {
    # Old chats of earlier tests stay open; a cap would make later claims fail.
    "central": {"max_chats_per_officer": 1000, "supervisors": [f"@{SERGEANT}:{SERVER}"],
                "canned": {"hello": "Hello, this is the police. How can we help?"},
                "emergency": {"en": ["knife", "help me"], "fr": ["au secours"]}},
    "nightshift": {"max_chats_per_officer": 1000},
    "interop": {"max_chats_per_officer": 1000},
    "closed": {"hours": {"timezone": "UTC", "weekly": {}}, "max_chats_per_officer": 1000},
    "hooked": {"supervisors": [f"@{SUPERVISOR}:{SERVER}"], "max_chats_per_officer": 1000},
}
# The suite's officers sign out with chats still claimed (they are long gone by the end of a run): no shared
# agency hands chats on for an absent holder.
for _agency in OFFICERS:
    _settings = TEST_AGENCY_SETTINGS.setdefault(_agency, {})
    _settings["timeouts"] = {"officer_absent_seconds": 0, **_settings.get("timeouts", {})}


@pytest.hookimpl(trylast=True)          # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the reduced bench runs the collected guard tests will check, in the background (bench_runs.py), and
    move those guard tests to the end of the session: met in collection order, the suite stood still for about
    two minutes waiting for runs still queued, which the rest of the suite now overlaps."""
    agencies.PLAN.plan(items, SERVER)       # each marked test's own agency, in the session bridge's config
    guards = [item for item in items if item.get_closest_marker("bench")]
    items[:] = [item for item in items if not item.get_closest_marker("bench")] + guards
    if config.option.collectonly:
        return
    bench_runs.RUNS.plan([tuple(mark.args[0]) for item in guards for mark in item.iter_markers("bench")])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    bench_runs.RUNS.stop()


@dataclass
class MatrixEnv(BridgeEnv):
    dir: Path
    synapse: LocalSynapse
    config_path: Path
    registration_path: Path
    config: dict
    bridge: BridgeProcess

    @property
    def webhook_port(self) -> int:
        return int(self.config["webhooks"]["endpoints"][0]["url"].split(":")[2].split("/")[0])

    def officer_id(self, agency: str) -> str:
        """The officer of a shared agency by its key (or the user ID as it is, e.g. an own agency's officer)."""
        if agency.startswith("@"):
            return agency
        return f"@{({**OFFICERS, **OTHERS, 'sergeant': SERGEANT, 'supervisor': SUPERVISOR})[agency]}:{SERVER}"


AGENCY_HOST = "127.0.0.2"      # an agency's own website, allowed to embed the widget (tests/browser)


def write_bridge_config(dir: Path, hs_url: str, own: Sequence[agencies.OwnAgency] = ()) -> tuple[Path, dict]:
    """The session bridge's config (and that of bridges built like it); ``own``: the tests' own agencies."""
    web_port, as_port, metrics_port, webhook_port = free_port(), free_port(), free_port(), free_port()
    agency_site = f"http://{AGENCY_HOST}:{free_port(AGENCY_HOST)}"
    config = {
        "homeserver": {"url": hs_url, "server_name": SERVER},
        "appservice": {"id": "precinct", "port": as_port, "url": f"http://127.0.0.1:{as_port}",
                       "as_token": "placeholder", "hs_token": "placeholder"},
        "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}", "max_message_chars": 4000,
                "embed_origins": [agency_site]},
        "site": {"quick_exit_url": f"{agency_site}/weather", "phone_number": "101"},
        "store": {"path": "precinct.db", "crypto_dir": "crypto"},
        "metrics": {"port": metrics_port},
        "crypto": crypto_section(),
        # No queue cap for the shared agencies: earlier tests' chats and the property tests' floods wait there.
        "chats": {"puppet_pool_size": 2, "max_waiting_per_agency": 0},
        "officers": {"presence_poll_seconds": 2},
        # Large enough for the 2 MB round trips of issue 10, small enough to go just past it cheaply.
        "attachments": {"max_bytes": ATTACHMENT_LIMIT},
        # Every test starts its chats from 127.0.0.1: limits the suite never meets (see limited.LOOSE_LIMITS).
        "limits": limited.LOOSE_LIMITS,
        "agencies": [{"id": a, "name": f"{a.title()} Police", "officers": [f"@{o}:{SERVER}"],
                      **TEST_AGENCY_SETTINGS.get(a, {})} for a, o in OFFICERS.items()]
                    + [a.agency_entry() for a in own],
        "topics": [{"id": "general", "label": "General enquiry", "agency": "central"},
                   {"id": "lost-property", "label": "Lost property", "agency": "central"},
                   {"id": "night", "label": "Night desk", "agency": "nightshift"},
                   {"id": "interop", "label": "Interop", "agency": "interop"},
                   {"id": "hooked", "label": "Hooked", "agency": "hooked"},
                   {"id": "after-hours", "label": "After hours", "agency": "closed"}]
                  + [a.topic_entry() for a in own],
        "webhooks": {"endpoints": [{"agency": "hooked", "url": f"http://127.0.0.1:{webhook_port}/hook",
                                    "secret": WEBHOOK_SECRET}]},
        "logging": {"level": "INFO"},
    }
    path = dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


@pytest.fixture(scope="session")
def matrix_env(tmp_path_factory: pytest.TempPathFactory):
    dir = tmp_path_factory.mktemp("matrix")
    hs_port = free_port()
    config_path, _ = write_bridge_config(dir, f"http://127.0.0.1:{hs_port}", agencies.PLAN.agencies)
    registration = dir / "registration.yaml"
    subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(config_path),
                    "-o", str(registration)], check=True, cwd=ROOT, capture_output=True)
    config = yaml.safe_load(config_path.read_text())
    # A second bridge with the proof-of-work gate on (pow_env below): Synapse must know it from the start.
    pow_registration = pow_bridge.prepare(dir / "pow", f"http://127.0.0.1:{hs_port}", SERVER)
    # And one with tight admission limits (limited_env below).
    limited_registration = limited.prepare(dir / "limited", f"http://127.0.0.1:{hs_port}", SERVER)
    # And one under a low open-files limit (lowfd_env below).
    lowfd_registration = lowfd.prepare(dir / "lowfd", f"http://127.0.0.1:{hs_port}", SERVER)
    # And one behind nginx running the sample config (proxied_env below).
    proxied_registration = proxied.prepare(dir / "proxied", f"http://127.0.0.1:{hs_port}", SERVER)
    # And one whose data folder is backed up, wiped and restored (restorable_env below).
    restorable_registration = restorable.prepare(dir / "restorable", f"http://127.0.0.1:{hs_port}", SERVER)
    synapse = homeserver_class()(dir / "synapse", SERVER, hs_port,
                                 [registration, pow_registration, limited_registration, lowfd_registration,
                                  proxied_registration, restorable_registration])
    bridge = BridgeProcess(config_path, config["web"]["public_url"], dir / "bridge.log")
    try:
        synapse.start()
        for localpart in [*OFFICERS.values(), SERGEANT, *OTHERS.values()]:
            synapse.register_user(localpart, PASSWORD)
        synapse.register_user(SUPERVISOR, PASSWORD)
        for own in agencies.PLAN.agencies:
            for officer in own.officers:
                synapse.register_user(officer[1:].split(":")[0], PASSWORD)
        synapse.register_user(pow_bridge.OFFICER, PASSWORD)
        synapse.register_user(limited.OFFICER, PASSWORD)
        synapse.register_user(lowfd.OFFICER, PASSWORD)
        synapse.register_user(proxied.OFFICER, PASSWORD)
        synapse.register_user(proxied.SUPERVISOR, PASSWORD)
        synapse.register_user(restorable.OFFICER, PASSWORD)
        # The hooked agency's supervisors' room, with the bot invited: the daily summary goes there, and with
        # summary_time 00:00 yesterday's is due as soon as the bridge starts.
        room = supervisor_room.create_room(synapse.url, supervisor_room.login(synapse.url, SUPERVISOR, PASSWORD),
                                           "Hooked supervisors", [f"@precinct:{SERVER}"])
        config["reports"] = {"summary_rooms": {"hooked": room}, "summary_time": "00:00"}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        bridge.start()
        yield MatrixEnv(dir, synapse, config_path, registration, config, bridge)
    finally:
        bridge.stop()
        synapse.close()


@pytest.fixture(scope="session")
def pow_env(matrix_env: MatrixEnv):
    """The bridge with the proof-of-work gate on (tests/support/pow_bridge.py), on the session's Synapse;
    started on first use, stopped by PID at the end of the session."""
    env = pow_bridge.env(matrix_env.dir / "pow")
    try:
        env.bridge.start()
        yield env
    finally:
        env.bridge.stop()


@pytest.fixture(scope="session")
def proxied_env(matrix_env: MatrixEnv):
    """The bridge behind Debian's nginx with config/nginx-precinct.conf (tests/support/proxied.py), on the
    session's Synapse; both started on first use, stopped by PID at the end of the session."""
    env = proxied.env(matrix_env.dir / "proxied")
    try:
        env.bridge.start()
        env.nginx.start()
        yield env
    finally:
        env.nginx.stop()
        env.bridge.stop()


@pytest.fixture(scope="session")
def limited_session(matrix_env: MatrixEnv):
    """The bridge with tight limits and a trusted proxy (tests/support/limited.py), on the session's Synapse;
    started by the first test that needs it (limited_env), stopped by PID at the end of the session."""
    env = limited.env(matrix_env.dir / "limited")
    try:
        yield env
    finally:
        env.bridge.stop()


@pytest.fixture(scope="session")
def lowfd_env(matrix_env: MatrixEnv):
    """The bridge under a low open-files limit (tests/support/lowfd.py), on the session's Synapse; started on
    first use, stopped by PID at the end of the session."""
    env = lowfd.env(matrix_env.dir / "lowfd")
    try:
        env.bridge.start()
        yield env
    finally:
        env.bridge.stop()


@pytest.fixture
def restorable_env(matrix_env: MatrixEnv) -> restorable.RestorableEnv:
    """A bridge of its own on the session's Synapse (tests/support/restorable.py); the test starts and stops it."""
    return restorable.env(matrix_env.dir / "restorable")


@pytest.fixture
def limited_env(limited_session: limited.LimitedEnv) -> limited.LimitedEnv:
    """That bridge, restarted for this test: every bucket full, the tight limits as they are."""
    limited_session.restart()
    return limited_session


@pytest.fixture
async def visitors(matrix_env: MatrixEnv):
    """Makes visitor clients; at the end their chats are ended, so none is left waiting in a shared queue."""
    made: list[Visitor] = []

    def make() -> Visitor:
        made.append(Visitor(matrix_env.public_url))
        return made[-1]
    yield make
    for v in made:
        if v.chat_id:
            await v.http("POST", f"/api/v1/chats/{v.chat_id}/close", json={})
        await v.close()


@pytest.fixture
def agency(request: pytest.FixtureRequest, matrix_env: MatrixEnv) -> agencies.OwnAgency:
    """This test's own agency in the session bridge (``@pytest.mark.agency(**settings)`` on the test): a queue
    no other test touches. ``officers=N`` in the marker gives it N officers (default 1)."""
    return agencies.PLAN.of(request.node)


@pytest.fixture
def bridge_log(matrix_env: MatrixEnv):
    """On failure, show the bridge's log tail."""
    yield
    # (printed by pytest only when a test fails, via captured output)
    print("---- bridge log tail ----\n" + matrix_env.bridge.tail(80))


@pytest.fixture
async def officer_of(matrix_env: MatrixEnv, tmp_path):
    """``await officer_of("central")``: a started encrypted nio officer of that agency, stopped after the test.

    It claims every chat whose new dispatch notice it reads (``auto_claim=False`` for tests of claiming)."""
    pool = OfficerPool(tmp_path, PASSWORD)

    async def make(agency: str, auto_claim: bool = True) -> NioOfficer:
        return await pool.start(matrix_env.synapse.url, matrix_env.officer_id(agency), f"officer-{agency}", auto_claim)

    yield make
    await pool.stop_all()
