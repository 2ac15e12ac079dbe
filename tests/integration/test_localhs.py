"""Integration tests for bridge.devtools.localhs: a real Synapse, started on loopback.

One homeserver with an appservice registration (module-scoped, started once),
and two homeservers federating with each other over TLS on 127.0.0.1.
"""

from __future__ import annotations

import os
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.devtools.localhs import LocalSynapse, free_port, request_json

AS_TOKEN = "as-token-" + uuid.uuid4().hex
HS_TOKEN = "hs-token-" + uuid.uuid4().hex


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _poll(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    """Call ``check`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _login(hs: LocalSynapse, localpart: str, password: str) -> str:
    status, body = request_json(
        "POST",
        f"{hs.url}/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        },
    )
    assert status == 200, body
    return str(body["access_token"])


# -- one homeserver with an appservice ---------------------------------------


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    base = tmp_path_factory.mktemp("localhs")
    registration = base / "registration.yaml"
    registration.write_text(
        yaml.safe_dump(
            {
                "id": "precinct-test",
                # Nothing listens there: Synapse's pushes fail, which is fine here.
                "url": f"http://127.0.0.1:{free_port()}",
                "as_token": AS_TOKEN,
                "hs_token": HS_TOKEN,
                "sender_localpart": "precinct",
                "namespaces": {
                    "users": [{"exclusive": True, "regex": "@webchat_.*:localhost"}],
                    "rooms": [],
                    "aliases": [],
                },
                "rate_limited": False,
                "receive_ephemeral": True,
                "de.sorunome.msc2409.push_ephemeral": True,
                "org.matrix.msc3202": True,
                "io.element.msc4190": True,
            }
        )
    )
    server = LocalSynapse(
        data_dir=base / "hs",
        server_name="localhost",
        port=free_port(),
        registration_paths=[registration],
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_client_api_answers(hs: LocalSynapse) -> None:
    assert hs.pid is not None and _pid_alive(hs.pid)
    status, body = request_json("GET", f"{hs.url}/_matrix/client/versions")
    assert status == 200
    assert body["versions"]


def test_config_is_loopback_only_with_our_settings(hs: LocalSynapse) -> None:
    config = yaml.safe_load(hs.config_path.read_text())
    for listener in config["listeners"]:
        assert listener["bind_addresses"] == ["127.0.0.1"]
    assert config["trusted_key_servers"] == []
    assert config["experimental_features"]["msc2409_to_device_messages_enabled"] is True
    assert config["experimental_features"]["msc3202_transaction_extensions"] is True
    assert config["database"]["args"]["database"].startswith(str(hs.data_dir))
    assert hs.log_path.exists()


def test_register_user_is_idempotent(hs: LocalSynapse) -> None:
    assert hs.register_user("officer1", "pw-1", admin=True) == "@officer1:localhost"
    assert hs.register_user("officer1", "pw-1", admin=True) == "@officer1:localhost"
    assert hs.register_user("officer2", "pw-2") == "@officer2:localhost"
    token = _login(hs, "officer1", "pw-1")
    status, body = request_json("GET", f"{hs.url}/_matrix/client/v3/account/whoami", token=token)
    assert status == 200 and body["user_id"] == "@officer1:localhost"


def test_appservice_registers_puppet_and_device(hs: LocalSynapse) -> None:
    status, body = request_json(
        "POST",
        f"{hs.url}/_matrix/client/v3/register",
        {"type": "m.login.application_service", "username": "webchat_x", "inhibit_login": True},
        token=AS_TOKEN,
    )
    assert status == 200, body
    assert body["user_id"] == "@webchat_x:localhost"

    # MSC4190: the appservice creates the puppet's device itself.
    status, body = request_json(
        "PUT",
        f"{hs.url}/_matrix/client/v3/devices/DEV1?user_id={_q('@webchat_x:localhost')}",
        {"display_name": "visitor"},
        token=AS_TOKEN,
    )
    assert status in (200, 201), body

    status, body = request_json(
        "GET",
        f"{hs.url}/_matrix/client/v3/account/whoami?user_id={_q('@webchat_x:localhost')}",
        token=AS_TOKEN,
    )
    assert status == 200 and body["user_id"] == "@webchat_x:localhost", body


def test_stop_leaves_no_process_and_restart_keeps_accounts(hs: LocalSynapse) -> None:
    pid = hs.pid
    assert pid is not None
    hs.stop()
    assert hs.pid is None
    assert not _pid_alive(pid)
    hs.stop()  # idempotent
    with pytest.raises(OSError):
        request_json("GET", f"{hs.url}/_matrix/client/versions", timeout=2)

    # A Synapse that exits during start-up is reported with its log, not waited for.
    broken = LocalSynapse(
        hs.data_dir, hs.server_name, hs.port,
        registration_paths=[hs.data_dir / "no-such-registration.yaml"],
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="no-such-registration"):
        broken.start(timeout=30)
    assert broken.pid is None

    # Restarting on the same data dir reuses config, shared secret and database.
    hs.start()
    assert hs.pid is not None and hs.pid != pid
    assert hs.register_user("officer1", "pw-1") == "@officer1:localhost"
    _login(hs, "officer1", "pw-1")


# -- two homeservers federating -----------------------------------------------


@pytest.fixture
def federated_pair(tmp_path: Path) -> Iterator[tuple[LocalSynapse, LocalSynapse]]:
    servers = []
    for name in ("a", "b"):
        fed_port = free_port()
        servers.append(
            LocalSynapse(
                data_dir=tmp_path / name,
                server_name=f"127.0.0.1:{fed_port}",
                port=free_port(),
                federation_port=fed_port,
            )
        )
    try:
        # Config generation and start-up take seconds each: do both at once.
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(s.start) for s in servers]:
                future.result()
        yield servers[0], servers[1]
    finally:
        pids = [s.pid for s in servers]
        for server in servers:
            server.stop()
        for pid in pids:
            assert pid is None or not _pid_alive(pid)


def test_federation_invite_join_and_message(
    federated_pair: tuple[LocalSynapse, LocalSynapse],
) -> None:
    a, b = federated_pair
    alice = a.register_user("alice", "pw-a")
    bob = b.register_user("bob", "pw-b")
    assert alice == f"@alice:127.0.0.1:{a.federation_port}"
    alice_token = _login(a, "alice", "pw-a")
    bob_token = _login(b, "bob", "pw-b")

    status, body = request_json(
        "POST",
        f"{a.url}/_matrix/client/v3/createRoom",
        {"preset": "private_chat", "name": "federation test", "invite": [bob]},
        token=alice_token,
    )
    assert status == 200, body
    room_id = body["room_id"]

    # The invite travels A -> B over federation; join once B knows about it.
    def join() -> bool:
        status, body = request_json(
            "POST", f"{b.url}/_matrix/client/v3/join/{_q(room_id)}", {}, token=bob_token
        )
        return status == 200

    _poll("bob to join over federation", join)

    status, body = request_json(
        "PUT",
        f"{a.url}/_matrix/client/v3/rooms/{_q(room_id)}/send/m.room.message/txn1",
        {"msgtype": "m.text", "body": "hello from A"},
        token=alice_token,
    )
    assert status == 200, body

    def bob_sees_message() -> bool:
        status, body = request_json(
            "GET",
            f"{b.url}/_matrix/client/v3/rooms/{_q(room_id)}/messages?dir=b&limit=20",
            token=bob_token,
        )
        return status == 200 and any(
            ev.get("sender") == alice and ev.get("content", {}).get("body") == "hello from A"
            for ev in body.get("chunk", [])
        )

    _poll("bob to see alice's message", bob_sees_message)
