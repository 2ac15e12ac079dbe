"""The appservice registration and `generate-registration`, which writes fresh secrets into both files."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from bridge import __main__ as cli
from bridge import config as cfg
from bridge.appservice.registration import new_tokens, registration

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "example-config.yaml"
HEX64 = re.compile(r"[0-9a-f]{64}")


def make_config(server_name: str = "police.example", prefix: str = "webchat_") -> cfg.Config:
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    raw["homeserver"]["server_name"] = server_name
    for agency in raw["agencies"]:        # officers must be on this homeserver (or an allowed one)
        for key in ("officers", "supervisors"):
            agency[key] = [o.split(":", 1)[0] + ":" + server_name for o in agency.get(key, [])]
    raw["appservice"]["puppet_prefix"] = prefix
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    return cfg.load(raw, ROOT, {})


def user_regex(config: cfg.Config) -> re.Pattern[str]:
    users = registration(config)["namespaces"]["users"]
    assert len(users) == 1 and users[0]["exclusive"] is True
    return re.compile(users[0]["regex"])


def claims(pattern: re.Pattern[str], user_id: str) -> bool:
    """Synapse tests namespaces with ``regex.match`` (anchored at the start only)."""
    return pattern.match(user_id) is not None


# ---- the registration ------------------------------------------------------------------------------

def test_registration_fields():
    reg = registration(make_config())
    assert reg["id"] == "precinct"
    assert reg["url"] == "http://127.0.0.1:29330"
    assert reg["as_token"] == "a" * 64 and reg["hs_token"] == "b" * 64
    assert reg["sender_localpart"] == "precinct"
    assert reg["namespaces"]["aliases"] == [] and reg["namespaces"]["rooms"] == []
    assert reg["rate_limited"] is False


def test_ephemeral_and_msc_keys():
    reg = registration(make_config())
    assert reg["receive_ephemeral"] is True
    assert reg["de.sorunome.msc2409.push_ephemeral"] is True      # typing, receipts, to-device
    assert reg["org.matrix.msc3202"] is True                      # OTK counts, device lists, masquerading
    assert reg["io.element.msc4190"] is True                      # appservice-managed devices


def test_registration_is_plain_yaml():
    reg = registration(make_config())
    assert yaml.safe_load(yaml.safe_dump(reg, sort_keys=False)) == reg


@pytest.mark.parametrize("user_id, expected", [
    ("@webchat_abc:police.example", True),
    ("@webchat_0a1b2c3d4e5f6a7b:police.example", True),
    ("@webchatx:police.example", False),
    ("@webchat:police.example", False),
    ("@precinct:police.example", False),
    ("@officer1:police.example", False),
    ("@xwebchat_abc:police.example", False),
    ("@webchat_abc:other.example", False),
    ("@webchat_abc:policeXexample", False),
])
def test_user_namespace(user_id: str, expected: bool):
    pattern = user_regex(make_config())
    assert claims(pattern, user_id) is expected
    assert (pattern.fullmatch(user_id) is not None) is expected


@pytest.mark.parametrize("user_id, expected", [
    ("@webchat_a:127.0.0.1:8448", True),
    ("@webchat_a:127x0x0x1:8448", False),
    ("@webchat_a:127.0.0.1:8449", False),
    ("@webchat_a:127.0.0.1", False),
    ("@webchat_a:localhost:8448", False),
])
def test_user_namespace_escapes_server_name_with_dots_and_port(user_id: str, expected: bool):
    pattern = user_regex(make_config(server_name="127.0.0.1:8448"))
    assert claims(pattern, user_id) is expected


def test_user_namespace_escapes_the_prefix():
    pattern = user_regex(make_config(prefix="web.chat_"))
    assert claims(pattern, "@web.chat_1:police.example")
    assert not claims(pattern, "@webXchat_1:police.example")


@pytest.mark.parametrize("server, user_id", [
    ("police.example", "@webchat_abc:police.example.evil.org"),
    ("police.example", "@webchat_abc:police.examples"),
    ("127.0.0.1:8448", "@webchat_a:127.0.0.1:84489"),
])
def test_user_namespace_does_not_claim_servers_that_only_start_with_ours(server: str, user_id: str):
    """The regex must end at the server name: homeservers match it from the start only."""
    assert not claims(user_regex(make_config(server_name=server)), user_id)


def test_new_tokens_are_random_hex():
    first, second = new_tokens(), new_tokens()
    for token in (*first, *second):
        assert HEX64.fullmatch(token)
    assert len({*first, *second}) == 4


# ---- generate-registration -------------------------------------------------------------------------

@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def secrets_of(path: Path) -> tuple[str, str, str]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return raw["appservice"]["as_token"], raw["appservice"]["hs_token"], raw["crypto"]["pickle_key"]


def test_generate_registration_writes_new_tokens_into_both_files(config_copy: Path, tmp_path: Path, capsys):
    out = tmp_path / "registration.yaml"
    cli.generate_registration(config_copy, out)
    as_token, hs_token, pickle_key = secrets_of(config_copy)
    reg = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert HEX64.fullmatch(as_token) and HEX64.fullmatch(hs_token) and as_token != hs_token
    assert (reg["as_token"], reg["hs_token"]) == (as_token, hs_token)
    assert HEX64.fullmatch(pickle_key) and pickle_key not in (as_token, hs_token)
    assert str(out) in capsys.readouterr().out


def test_generate_registration_makes_different_tokens_each_run(config_copy: Path, tmp_path: Path):
    seen = set()
    for run in range(3):
        out = tmp_path / f"registration-{run}.yaml"
        cli.generate_registration(config_copy, out)
        as_token, hs_token, _ = secrets_of(config_copy)
        reg = yaml.safe_load(out.read_text(encoding="utf-8"))
        assert (reg["as_token"], reg["hs_token"]) == (as_token, hs_token)
        seen |= {as_token, hs_token}
    assert len(seen) == 6


def test_generate_registration_keeps_a_real_pickle_key(config_copy: Path, tmp_path: Path):
    """Replacing it would make every stored device unusable."""
    cli.generate_registration(config_copy, tmp_path / "r1.yaml")
    pickle_key = secrets_of(config_copy)[2]
    cli.generate_registration(config_copy, tmp_path / "r2.yaml")
    assert secrets_of(config_copy)[2] == pickle_key


def test_generate_registration_keeps_comments_and_everything_else(config_copy: Path, tmp_path: Path):
    before = config_copy.read_text(encoding="utf-8").splitlines()
    cli.generate_registration(config_copy, tmp_path / "registration.yaml")
    after = config_copy.read_text(encoding="utf-8").splitlines()
    assert len(after) == len(before)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert [b.strip().split(":")[0] for b, _ in changed] == ["as_token", "hs_token", "pickle_key"]
    for b, a in changed:
        assert a.startswith(b[:len(b) - len(b.lstrip())] + b.strip().split(":")[0] + ": ")
    assert [line for line in after if line.lstrip().startswith("#")] == \
        [line for line in before if line.lstrip().startswith("#")]


def test_generated_config_loads(config_copy: Path, tmp_path: Path):
    cli.generate_registration(config_copy, tmp_path / "registration.yaml")
    config = cfg.load_file(config_copy, environ={})
    reg = yaml.safe_load((tmp_path / "registration.yaml").read_text(encoding="utf-8"))
    assert reg == registration(config)
    assert config.get("homeserver.server_name") == "police.example"


def test_generate_registration_through_the_command_line(config_copy: Path, tmp_path: Path, capsys):
    out = tmp_path / "registration.yaml"
    assert cli.main(["generate-registration", "-c", str(config_copy), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["hs_token"] == secrets_of(config_copy)[1]


def test_generate_registration_refuses_a_bad_config_and_writes_nothing(config_copy: Path, tmp_path: Path,
                                                                      capsys):
    original = config_copy.read_text(encoding="utf-8").replace("port: 8080", "port: eighty")
    config_copy.write_text(original, encoding="utf-8")
    out = tmp_path / "registration.yaml"
    assert cli.main(["generate-registration", "-c", str(config_copy), "-o", str(out)]) == 2
    assert "web.port" in capsys.readouterr().err
    assert not out.exists()
    assert config_copy.read_text(encoding="utf-8") == original


def test_generate_registration_names_a_missing_secret_key(config_copy: Path, tmp_path: Path):
    text = config_copy.read_text(encoding="utf-8")
    config_copy.write_text(re.sub(r"(?m)^\s+hs_token:.*\n", "", text), encoding="utf-8")
    with pytest.raises(cfg.ConfigError, match="hs_token"):
        cli.generate_registration(config_copy, tmp_path / "registration.yaml")


def test_generate_registration_replaces_only_the_values_as_yaml_reads_them(tmp_path: Path):
    """The values are found by the YAML parser, not by a pattern: a comment after a value stays (a pattern up
    to the end of the line ate it), a quoted value is replaced whole, an empty one is filled."""
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("  as_token: CHANGE-ME-as-token", "  as_token: 'CHANGE-ME'   # from the vault, see RUNBOOK-7")
    text = text.replace("  hs_token: CHANGE-ME-hs-token", "  hs_token:")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    cli.generate_registration(path, tmp_path / "registration.yaml")
    after = path.read_text(encoding="utf-8")
    as_token, hs_token, _ = secrets_of(path)
    assert HEX64.fullmatch(as_token) and HEX64.fullmatch(hs_token)
    assert f"  as_token: {as_token}   # from the vault, see RUNBOOK-7\n" in after
    assert f"  hs_token: {hs_token}\n" in after
    assert len(after.splitlines()) == len(text.splitlines())
