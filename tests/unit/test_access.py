"""Who may take part in a chat room: the federation allowlist, configured officers, the server ACL."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge import config as cfg
from bridge.matrix.rooms import chat_room_request, pool_room_request
from bridge.officers import commands
from bridge.officers.access import Access
from bridge.officers.admission import _chunks
from bridge.officers.transfer import Transfers

ROOT = Path(__file__).parents[2]
HOME, NORTH = "police.example", "north.example:8448"


def load(**changes) -> cfg.Config:
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["federation"] = {"allowed_servers": [NORTH]}
    raw["agencies"] = [{"id": "central", "name": "Central Police", "officers": [f"@anna:{HOME}"],
                        "supervisors": [f"@sarge:{HOME}"]},
                       {"id": "north", "name": "North Police", "officers": [f"@bo:{NORTH}"]}]
    for key, value in changes.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return cfg.load(raw, ROOT, {})


def access(config: cfg.Config | None = None) -> Access:
    return Access(config or load(), lambda u: u.startswith("@webchat_") or u == f"@precinct:{HOME}")


def test_configured_officers_of_allowed_servers_and_our_own_users_take_part():
    a = access()
    assert a.may_take_part(f"@anna:{HOME}") and a.may_take_part(f"@bo:{NORTH}")
    assert a.may_take_part(f"@webchat_1:{HOME}") and a.may_take_part(f"@precinct:{HOME}")
    assert a.may_take_part(f"@sarge:{HOME}") and a.agency_of(f"@sarge:{HOME}").id == "central"  # type: ignore[union-attr]


@pytest.mark.parametrize("user, why", [
    ("@eve:evil.example", "not an allowed server"),
    ("@bo:north.example", "not an allowed server"),            # same host, no port: another server name
    (f"@stranger:{NORTH}", "not a configured officer"),
    (f"@stranger:{HOME}", "not a configured officer"),
])
def test_everyone_else_is_refused_with_a_reason(user: str, why: str):
    a = access()
    assert not a.may_take_part(user)
    assert why in a.refusal(user)


def test_server_acl_allows_our_server_and_the_allowlist_only():
    acl = access().server_acl()
    assert acl == {"allow": [HOME, "north.example", NORTH], "deny": [], "allow_ip_literals": False}


def test_server_acl_for_ip_literal_servers_lists_host_and_full_name():
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["homeserver"]["server_name"] = "127.0.0.1:8448"
    raw["federation"] = {"allowed_servers": ["127.0.0.2:8448"]}
    raw["agencies"] = [{"id": "central", "name": "A", "officers": ["@o:127.0.0.1:8448"]}]
    config = cfg.load(raw, ROOT, {})
    acl = access(config).server_acl()
    assert acl == {"allow": ["127.0.0.1", "127.0.0.1:8448", "127.0.0.2", "127.0.0.2:8448"], "deny": [],
                   "allow_ip_literals": True}


def test_chat_and_pool_rooms_carry_the_acl_and_only_the_bridge_may_change_it():
    acl = access().server_acl()
    for body in (pool_room_request("@precinct:x", "@webchat_1:x", "10", acl),
                 chat_room_request("Chat 1", [], "@precinct:x", "@webchat_1:x", "10", acl)):
        events = [e for e in body["initial_state"] if e["type"] == "m.room.server_acl"]
        assert events == [{"type": "m.room.server_acl", "state_key": "", "content": acl}]
        assert body["power_level_content_override"]["events"]["m.room.server_acl"] == 100


def test_officers_on_servers_not_allowed_stop_start_up_naming_the_key():
    with pytest.raises(cfg.ConfigError, match=r"agencies\[1\]\.officers: @bo:north.example:8448 .*allowed_servers"):
        load(federation__allowed_servers=[])


def test_supervisors_on_servers_not_allowed_stop_start_up_too():
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["agencies"] = [{"id": "central", "name": "C", "officers": [f"@anna:{HOME}"], "supervisors": ["@s:evil.example"]}]
    with pytest.raises(cfg.ConfigError, match=r"agencies\[0\]\.supervisors: @s:evil.example is on evil.example"):
        cfg.load(raw, ROOT, {})


@pytest.mark.parametrize("value", ["north.example/x", ["a b"], [""], [8448]])
def test_bad_allowlist_is_refused(value):
    with pytest.raises(cfg.ConfigError, match="federation.allowed_servers"):
        load(federation__allowed_servers=value)


def test_transfer_first_officer_must_be_leave_or_stay():
    assert load().get("routing.transfer_first_officer") == "leave"
    assert load(routing__transfer_first_officer="stay").get("routing.transfer_first_officer") == "stay"
    with pytest.raises(cfg.ConfigError, match="routing.transfer_first_officer: must be leave or stay"):
        load(routing__transfer_first_officer="go")


def test_transfer_targets():
    config = load()
    t = Transfers(config, None, access(config), None, None, None)  # type: ignore[arg-type]
    assert t.resolve("north") == (config.agency("north"), None)
    assert t.resolve("North Police") == (config.agency("north"), None)
    assert t.resolve(f"@bo:{NORTH}") == (config.agency("north"), f"@bo:{NORTH}")
    assert "unknown agency 'south'" in t.resolve("south") and "central, north" in t.resolve("south")  # type: ignore[operator]
    assert "not an allowed server" in t.resolve("@eve:evil.example")  # type: ignore[operator]
    assert "not a configured officer" in t.resolve(f"@webchat_1:{HOME}")  # type: ignore[operator]


def test_transfer_command_needs_a_target():
    parsed = commands.parse("!transfer north  bike theft, county", "!", commands.CHAT_ROOM)
    assert isinstance(parsed, commands.Command)
    assert (parsed.first, parsed.rest) == ("north", "bike theft, county")
    missing = commands.parse("!transfer", "!", commands.CHAT_ROOM)
    assert isinstance(missing, commands.CommandError) and "!transfer <agency or @officer:server> [note]" in \
        missing.message


def test_conversation_notices_are_split_under_the_event_size_limit():
    lines = [f"line {i} " + "x" * 50 for i in range(100)]
    parts = _chunks(lines, 1000)
    assert all(len(p) <= 1000 for p in parts)
    assert "\n".join(parts).split("\n") == lines
    assert _chunks(["y" * 50], 10) == ["y" * 10]


def test_crypto_never_shows_nio_the_membership_of_users_who_may_not_hold_keys(tmp_path):
    from bridge.matrix.crypto import Crypto
    crypto = Crypto(None, "http://127.0.0.1:1", tmp_path, "k" * 32, None,  # type: ignore[arg-type]
                    may_hold_keys=access().may_take_part)

    def member(user: str) -> dict:
        return {"type": "m.room.member", "state_key": user, "content": {"membership": "invite"}}
    encryption = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
    events = [member(f"@anna:{HOME}"), member("@eve:evil.example"), encryption, member(f"@stranger:{NORTH}")]
    assert crypto._admitted(events) == [member(f"@anna:{HOME}"), encryption]


class _Api:
    """Just enough of HomeserverApi for admission: the room's members, and the requests made."""
    def __init__(self, members: dict[str, str]) -> None:
        self.members, self.requests = members, []

    async def room_state(self, user_id: str, room_id: str) -> list[dict]:
        return [{"type": "m.room.member", "state_key": u, "content": {"membership": m}} for u, m in self.members.items()]

    async def send(self, req, **kw) -> dict:     # HomeserverApi.send: a cs_api.Request, sent
        return await self.request(req.method, req.path, req.body, **kw)

    async def request(self, method: str, path: str, body=None, **kw) -> dict:
        self.requests.append((method, path, body))
        return {}


@pytest.mark.parametrize("policy, removed", [
    ("leave", {f"@anna:{HOME}", f"@other:{HOME}"}),
    ("stay", set()),
])
async def test_taking_over_a_transfer_gives_the_conversation_and_applies_the_first_officer_policy(
        tmp_path, policy: str, removed: set[str]):
    from types import SimpleNamespace

    from bridge.officers.admission import Admission
    from bridge.store import Store
    from bridge.store.messages import OFFICER, VISITOR
    config = load(routing__transfer_first_officer=policy)
    store = Store.open(tmp_path / "p.db")
    chat = store.chats.create("c1", "h", "general", "central", "Sam", None)
    store.chats.set_puppet("c1", f"@webchat_1:{HOME}")
    store.chats.set_room("c1", f"!r:{HOME}")
    store.messages.add("c1", VISITOR, "text", "my bike is gone", sender="Sam", client_id="x")
    store.messages.add("c1", OFFICER, "text", "which street?", sender="Anna", sender_mxid=f"@anna:{HOME}")
    store.chats.set_transfer("c1", "north", f"@bo:{NORTH}", f"@anna:{HOME}", "bike theft")
    notices: list[str] = []
    chats = SimpleNamespace(store=store, notify_officers=lambda chat, text: notices.append(text))
    api = _Api({f"@webchat_1:{HOME}": "join", f"@anna:{HOME}": "join", f"@other:{HOME}": "invite",
                f"@bo:{NORTH}": "join"})
    admission = Admission(config, chats, access(config), None, api)  # type: ignore[arg-type]

    await admission.joined(store.chats.get("c1"), f"@bo:{NORTH}")  # type: ignore[arg-type]

    assert len(notices) == 1 and "only officers see this" in notices[0].lower()
    assert "Sam: my bike is gone" in notices[0] and "Anna: which street?" in notices[0] and "bike theft" in notices[0]
    kicked = {body["user_id"] for method, path, body in api.requests if path.endswith("/kick")}
    assert kicked == removed
    notices.clear()
    await admission.joined(store.chats.get("c1"), f"@anna:{HOME}")  # type: ignore[arg-type]
    assert notices == []                     # the officer who transferred it gets nothing back
    assert chat.id == "c1"
