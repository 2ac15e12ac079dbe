"""bridge.devtools.workers: Synapse on PostgreSQL with Redis and workers behind nginx, started on loopback; and
one Synapse process on PostgreSQL alone.

The topology itself, whatever PRECINCT_HOMESERVER says: each duty is done by the worker named for it (told
apart by each process's own log), the data outlives a restart, and every process is gone, by PID, after stop.
"""
from __future__ import annotations

import json
import os
import threading
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from bridge.devtools.localhs import free_port, request_json
from bridge.devtools.workers import WORKERS, LocalSynapsePostgres, LocalSynapseWorkers
from tests.support.waiting import until

HS_TOKEN = "hs-token-of-the-topology-test"
AS_TOKEN = "as-token-of-the-topology-test"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Appservice(BaseHTTPRequestHandler):
    """Answers Synapse's transactions with 200 and keeps the event IDs they carried."""
    received: list[str] = []

    def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        type(self).received += [e.get("event_id", "") for e in body.get("events", [])]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def appservice() -> Iterator[tuple[str, type[_Appservice]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Appservice)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Appservice
    finally:
        server.shutdown()
        server.server_close()


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _registration(tmp_path: Path, url: str) -> Path:
    registration = tmp_path / "registration.yaml"
    registration.write_text(yaml.safe_dump({
        "id": "topology-test", "url": url, "as_token": AS_TOKEN, "hs_token": HS_TOKEN, "sender_localpart": "bot",
        "namespaces": {"users": [{"exclusive": True, "regex": "@webchat_.*:localhost"}], "rooms": [], "aliases": []},
        "rate_limited": False}))
    return registration


async def _message_to_the_appservice(hs: LocalSynapseWorkers, handler: type[_Appservice]) -> tuple[str, str]:
    """A user's message in a room the appservice's user joined, pushed to the appservice: (quoted room, event)."""
    hs.register_user("alice", "pw")
    status, body = request_json("POST", f"{hs.url}/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw"})
    assert status == 200, body
    token = body["access_token"]
    status, body = request_json("POST", f"{hs.url}/_matrix/client/v3/createRoom",
                                {"invite": ["@bot:localhost"]}, token=token)
    assert status == 200, body
    room = urllib.parse.quote(body["room_id"])
    status, body = request_json("POST", f"{hs.url}/_matrix/client/v3/rooms/{room}/join", {}, token=AS_TOKEN)
    assert status == 200, body
    status, body = request_json("PUT", f"{hs.url}/_matrix/client/v3/rooms/{room}/send/m.room.message/t1",
                                {"msgtype": "m.text", "body": "hello workers"}, token=token)
    assert status == 200, body
    event_id = body["event_id"]
    await until(lambda: event_id in handler.received, 60, "the event pushed to the appservice")
    return room, event_id


def _restart_keeps_the_data(hs: LocalSynapseWorkers, event_id: str) -> None:
    """Stop (every process gone by PID), start again on the same cluster: the account and the event are there."""
    pids = hs.pids
    hs.stop()
    assert not any(_alive(pid) for pid in pids.values()), pids
    assert hs.pid is None
    hs.start()
    assert hs.query("SELECT name FROM users WHERE name = ?", ["@alice:localhost"]) == [("@alice:localhost",)]
    assert hs.query("SELECT COUNT(*) FROM events WHERE event_id = ?", [event_id]) == [(1,)]


@contextmanager
def _running(hs: LocalSynapseWorkers) -> Iterator[LocalSynapseWorkers]:
    """Started; closed at the end, after which every process it ran then is gone (by PID) and so is its cluster."""
    try:
        hs.start()
        yield hs
    finally:
        pids = hs.pids
        postgres_dir = hs.postgres_dir if hs._postgres_dir_record.exists() else None
        hs.close()
    assert not any(_alive(pid) for pid in pids.values()), pids
    assert postgres_dir is None or not postgres_dir.exists()


async def test_each_duty_runs_on_its_worker_and_everything_stops_by_pid(tmp_path: Path, appservice) -> None:
    url, handler = appservice
    with _running(LocalSynapseWorkers(tmp_path / "hs", "localhost", free_port(),
                                      [_registration(tmp_path, url)])) as hs:
        assert set(hs.pids) == {"postgres", "redis", "main", *WORKERS, "nginx"}
        room, event_id = await _message_to_the_appservice(hs, handler)

        # Each process's log says what it did (Synapse writes its log lines up to a few seconds late).
        def logged(name: str, text: str) -> bool:
            return text in _log(hs.data_dir / f"{name}.log")
        # Client traffic reached the generic worker through nginx, not main.
        await until(lambda: logged("client1", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"), 30,
                    "the generic worker's log of the send")
        # The event persister wrote the events the other processes handed it over replication.
        await until(lambda: logged("persister1", "/_synapse/replication/send_event"), 30,
                    "the event persister's log of an event to persist")
        # The appservice worker pushed the transaction.
        await until(lambda: logged("appservice1", "/_matrix/app/v1/transactions/"), 30,
                    "the appservice worker's log of a transaction")
        main_log = _log(hs.log_path)
        assert "/send/m.room.message/t1" not in main_log
        assert "/_matrix/app/v1/transactions/" not in main_log
        assert "/_synapse/replication/send_event" not in main_log
        config = yaml.safe_load(hs.config_path.read_text())
        assert config["database"]["name"] == "psycopg2"
        assert config["federation_sender_instances"] == ["fedsender1"]
        assert hs.query("SELECT COUNT(*) FROM events WHERE event_id = ?", [event_id]) == [(1,)]

        _restart_keeps_the_data(hs, event_id)


async def test_one_process_on_postgres_serves_and_stops_by_pid(tmp_path: Path, appservice) -> None:
    """--homeserver postgres: Synapse's own process alone on the cluster, its listener the client port itself."""
    url, handler = appservice
    with _running(LocalSynapsePostgres(tmp_path / "hs", "localhost", free_port(),
                                       [_registration(tmp_path, url)])) as hs:
        pids = hs.pids
        assert set(pids) == {"postgres", "main"}
        assert hs.pid == pids["main"] and hs.synapse_pids == [pids["main"]]
        assert set(hs.process_groups()) == {"Synapse", "PostgreSQL"}
        _, event_id = await _message_to_the_appservice(hs, handler)
        config = yaml.safe_load(hs.config_path.read_text())
        assert config["database"]["name"] == "psycopg2"
        assert [listener["port"] for listener in config["listeners"]] == [hs.port]
        assert "redis" not in config and "stream_writers" not in config
        assert hs.query("SELECT COUNT(*) FROM events WHERE event_id = ?", [event_id]) == [(1,)]
        _restart_keeps_the_data(hs, event_id)
