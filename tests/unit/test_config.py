"""The configuration schema: example file, validation messages that name the key, environment overrides."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import config as cfg
from bridge.config import ConfigError

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "example-config.yaml"
REGENERATE = ("python -c \"from bridge import config; print(config.render_example(), end='')\" "
              "> example-config.yaml")
SECRETS = {"appservice.as_token": "a" * 64, "appservice.hs_token": "b" * 64, "crypto.pickle_key": "c" * 64}


def example_raw() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def with_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for path, value in SECRETS.items():
        section, key = path.split(".")
        raw[section][key] = value
    return raw


def good() -> dict[str, Any]:
    return with_secrets(example_raw())


def load(raw: Any, environ: dict[str, str] | None = None) -> cfg.Config:
    return cfg.load(raw, ROOT, environ or {})


def refused(raw: Any, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load(raw, environ)
    return str(e.value)


# ---- the example file ------------------------------------------------------------------------------

def test_example_file_is_exactly_the_rendered_schema():
    assert EXAMPLE.read_text(encoding="utf-8") == cfg.render_example(), (
        f"example-config.yaml has drifted from bridge/config.py's SCHEMA; regenerate it with\n    {REGENERATE}")


def _example_lines() -> list[str]:
    return EXAMPLE.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("key", cfg.SCHEMA, ids=lambda k: k.path)
def test_every_schema_key_is_in_the_example_with_a_comment_above(key: cfg.Key):
    lines = _example_lines()
    parts = key.path.split(".")
    if len(parts) == 1:
        index = lines.index(f"{parts[0]}:")
    else:
        start = lines.index(f"{parts[0]}:")
        end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")),
                   len(lines))
        matches = [i for i in range(start + 1, end) if lines[i].startswith(f"  {parts[1]}:")]
        assert len(matches) == 1, f"{key.path} is not (exactly once) in its section of the example"
        index = matches[0]
    first = index - 1
    while lines[first - 1].strip().startswith("#"):     # a multi-line explanation: its first line
        first -= 1
    above = lines[first].strip()
    assert above.startswith("# ") and key.doc.split()[0] in above, f"{key.path} has no explanation above it"
    if key.required:
        assert "(required)" in above
    if key.secret:
        assert "(secret)" in above


def test_example_values_parse_back_to_the_schema_examples():
    raw = example_raw()
    for key in cfg.SCHEMA:
        found, value = cfg._lookup(raw, key.path)
        assert found, key.path
        assert value == (key.example if key.example is not None else key.default), key.path


def test_example_is_refused_only_for_its_example_secrets():
    raw = example_raw()
    remaining = dict(SECRETS)
    while remaining:
        message = refused(raw)
        named = [path for path in remaining if path in message]
        assert len(named) == 1, f"expected one secret named, got: {message}"
        assert "example value" in message
        section, key = named[0].split(".")
        raw[section][key] = remaining.pop(named[0])
    loaded = load(raw)
    assert loaded.get("homeserver.server_name") == "police.example"


def test_example_with_real_secrets_loads():
    config = load(good())
    assert config.get("web.port") == 8080
    assert config.get("crypto.undecryptable_wait_seconds") == 60.0
    assert [a.id for a in config.agencies] == ["central"]
    assert config.agency("central").officers == ("@officer1:police.example", "@officer2:police.example")
    assert [(t.id, t.agency) for t in config.topics] == [("general", "central"), ("lost-property", "central")]
    assert config.topic(None).id == "general"
    assert config.path("store.path") == ROOT / "precinct.db"


def test_defaults_fill_in_optional_keys():
    raw = {"homeserver": {"server_name": "example.org"},
           "appservice": {"as_token": "a" * 32, "hs_token": "b" * 32},
           "crypto": {"pickle_key": "c" * 32},
           "agencies": [{"id": "a", "name": "A", "officers": []}]}
    config = load(raw)
    for key in cfg.SCHEMA:
        if not key.required and key.path != "topics":
            assert config.get(key.path) == key.default, key.path
    assert [(t.id, t.agency) for t in config.topics] == [("general", "a")]   # agency null: the first agency


def test_short_secret_is_refused():
    raw = good()
    raw["crypto"]["pickle_key"] = "short"
    assert "crypto.pickle_key" in refused(raw)


# ---- every kind of mistake names its key -----------------------------------------------------------

@pytest.mark.parametrize("path", [k.path for k in cfg.SCHEMA if k.required])
def test_missing_required_key(path: str):
    raw = good()
    parts = path.split(".")
    if len(parts) == 1:
        del raw[parts[0]]
    else:
        del raw[parts[0]][parts[1]]
    message = refused(raw)
    assert message.startswith(f"{path}: missing"), message


@pytest.mark.parametrize("path, value, expected", [
    ("web.port", "eighty", "expected int"),
    ("web.port", True, "expected int"),
    ("web.port", 80.5, "expected int"),
    ("homeserver.verify_tls", "yes", "expected bool"),
    ("homeserver.verify_tls", 1, "expected bool"),
    ("homeserver.server_name", 123, "expected str"),
    ("crypto.undecryptable_wait_seconds", "soon", "expected float"),
    ("chats.first_number", [1], "expected int"),
])
def test_wrong_type(path: str, value: Any, expected: str):
    raw = good()
    section, key = path.split(".")
    raw[section][key] = value
    message = refused(raw)
    assert message.startswith(f"{path}: {expected}"), message


def test_int_is_accepted_for_a_float_key():
    raw = good()
    raw["crypto"]["undecryptable_wait_seconds"] = 5
    value = load(raw).get("crypto.undecryptable_wait_seconds")
    assert value == 5.0 and isinstance(value, float)


def test_unknown_key():
    raw = good()
    raw["web"]["max_message_chars_typo"] = 10
    message = refused(raw)
    assert "web.max_message_chars_typo" in message and "unknown key" in message


def test_unknown_top_level_section():
    raw = good()
    raw["webb"] = {"port": 1}
    message = refused(raw)
    assert "webb" in message and "unknown top-level" in message


def test_config_that_is_not_a_mapping():
    assert "mapping" in refused(["not", "a", "mapping"])


def test_a_section_that_is_not_a_mapping_is_refused():
    """`logging: DEBUG` (instead of `logging: {level: DEBUG}`) must not be silently replaced by defaults."""
    raw = good()
    raw["logging"] = "DEBUG"
    assert "logging" in refused(raw)


@pytest.mark.parametrize("agencies, expected", [
    ([], "agencies:"),
    ("central", "agencies:"),
    (["central"], "agencies[0]:"),
    ([{"id": "Central Police", "name": "C", "officers": []}], "agencies[0].id:"),
    ([{"id": "", "name": "C", "officers": []}], "agencies[0].id:"),
    ([{"name": "C", "officers": []}], "agencies[0].id:"),
    ([{"id": "central", "name": "C", "officers": []}, {"id": "central", "name": "D", "officers": []}],
     "agencies[1].id: duplicate"),
    ([{"id": "central", "name": " ", "officers": []}], "agencies[0].name:"),
    ([{"id": "central", "name": "C", "officers": ["officer1"]}], "agencies[0].officers:"),
    ([{"id": "central", "name": "C", "officers": ["@officer1"]}], "agencies[0].officers:"),
    ([{"id": "central", "name": "C", "officers": "@officer1:police.example"}], "agencies[0].officers:"),
    ([{"id": "central", "name": "C", "officers": [], "colour": "blue"}], "agencies[0]: unknown key"),
    ([{"id": "c", "name": "C", "supervisors": ["sergeant"]}], "agencies[0].supervisors:"),
    ([{"id": "c", "name": "C", "routing": "random"}], "agencies[0].routing:"),
    ([{"id": "c", "name": "C", "max_chats_per_officer": 0}], "agencies[0].max_chats_per_officer:"),
    ([{"id": "c", "name": "C", "timeouts": {"unclaimed_seconds": -1}}], "agencies[0].timeouts.unclaimed_seconds:"),
    ([{"id": "c", "name": "C", "timeouts": {"unclaimed": 5}}], "agencies[0].timeouts:"),
    ([{"id": "c", "name": "C", "hours": {"timezone": "Mars/Olympus"}}], "agencies[0].hours.timezone:"),
    ([{"id": "c", "name": "C", "hours": {"timezone": "UTC", "weekly": {"mon": ["9-5"]}}}],
     "agencies[0].hours.weekly.mon:"),
    ([{"id": "c", "name": "C", "hours": {"timezone": "UTC", "weekly": {"monday": []}}}], "agencies[0].hours.weekly:"),
    ([{"id": "c", "name": "C", "hours": {"timezone": "UTC", "holidays": ["25/12"]}}], "agencies[0].hours.holidays:"),
    ([{"id": "c", "name": "C", "canned": {"hi there": "Hello"}}], "agencies[0].canned:"),
    ([{"id": "c", "name": "C", "present_officers_as": "Officer"}], "agencies[0].present_officers_as:"),
    ([{"id": "c", "name": "C", "emergency": ["knife"]}], "agencies[0].emergency:"),
    ([{"id": "c", "name": "C", "dispatch_room": "#dispatch:server"}], "agencies[0].dispatch_room:"),
    ([{"id": "central", "name": "C", "topics": ["nope"]}], "agencies[0].topics:"),
    ([{"id": "c", "name": "C", "max_waiting_chats": -1}], "agencies[0].max_waiting_chats:"),
    ([{"id": "c", "name": "C", "max_waiting_chats": "50"}], "agencies[0].max_waiting_chats:"),
    ([{"id": "c", "name": "C", "timeouts": {"abandoned_seconds": -5}}], "agencies[0].timeouts.abandoned_seconds:"),
])
def test_bad_agency(agencies: Any, expected: str):
    raw = good()
    raw["agencies"] = agencies
    message = refused(raw)
    assert message.startswith(expected), message


def test_topic_pointing_at_an_unknown_agency():
    raw = good()
    raw["topics"][1]["agency"] = "traffic"
    message = refused(raw)
    assert message.startswith("topics[1].agency:") and "'traffic'" in message and "central" in message


@pytest.mark.parametrize("topics, expected", [
    ([], "topics:"),
    ([{"label": "No id"}], "topics[0]:"),
    ([{"id": "general"}], "topics[0]:"),
])
def test_bad_topic(topics: Any, expected: str):
    raw = good()
    raw["topics"] = topics
    assert refused(raw).startswith(expected)


def test_topic_with_a_misspelt_key_is_refused():
    """`agnecy: traffic` must not silently route the topic's chats to the first agency."""
    raw = good()
    raw["agencies"].append({"id": "traffic", "name": "Traffic", "officers": []})
    raw["topics"][1] = {"id": "lost-property", "label": "Lost property", "agnecy": "traffic"}
    assert "topics[1]" in refused(raw)


@pytest.mark.parametrize("path", ["homeserver.url", "appservice.url", "web.public_url"])
@pytest.mark.parametrize("value", ["127.0.0.1:8008", "ftp://example.org", "http://", "https:// spaced"])
def test_bad_url(path: str, value: str):
    raw = good()
    section, key = path.split(".")
    raw[section][key] = value
    message = refused(raw)
    assert message.startswith(f"{path}:") and "URL" in message, message


@pytest.mark.parametrize("path", ["appservice.port", "web.port"])
@pytest.mark.parametrize("value", [0, -1, 65536, 100000])
def test_bad_port(path: str, value: int):
    raw = good()
    section, key = path.split(".")
    raw[section][key] = value
    message = refused(raw)
    assert message.startswith(f"{path}:") and "port" in message, message


@pytest.mark.parametrize("path, value", [
    ("appservice.puppet_prefix", "Web Chat"),
    ("appservice.bot_localpart", "Precinct!"),
    ("logging.level", "LOUD"),
    ("web.max_message_chars", 0),
    ("crypto.undecryptable_wait_seconds", -1.0),
])
def test_other_checks_name_the_key(path: str, value: Any):
    raw = good()
    section, key = path.split(".")
    raw[section][key] = value
    assert refused(raw).startswith(f"{path}:")


# ---- environment overrides -------------------------------------------------------------------------

def test_env_name():
    assert cfg.env_name("appservice.hs_token") == "PRECINCT_APPSERVICE__HS_TOKEN"
    assert cfg.env_name("agencies") == "PRECINCT_AGENCIES"


def test_env_overrides_a_secret():
    raw = example_raw()
    environ = {"PRECINCT_APPSERVICE__AS_TOKEN": "x" * 64, "PRECINCT_APPSERVICE__HS_TOKEN": "y" * 64,
               "PRECINCT_CRYPTO__PICKLE_KEY": "z" * 64}
    config = load(raw, environ)
    assert config.get("appservice.hs_token") == "y" * 64
    assert config.get("appservice.as_token") == "x" * 64


def test_env_supplies_a_missing_required_key():
    raw = good()
    del raw["appservice"]["hs_token"]
    config = load(raw, {"PRECINCT_APPSERVICE__HS_TOKEN": "h" * 40})
    assert config.get("appservice.hs_token") == "h" * 40


def test_env_example_secret_is_refused():
    message = refused(good(), {"PRECINCT_APPSERVICE__HS_TOKEN": "CHANGE-ME-please-please"})
    assert "appservice.hs_token" in message


def test_env_int_key():
    config = load(good(), {"PRECINCT_WEB__PORT": "9090"})
    assert config.get("web.port") == 9090


def test_env_float_key():
    config = load(good(), {"PRECINCT_CRYPTO__UNDECRYPTABLE_WAIT_SECONDS": "2.5"})
    assert config.get("crypto.undecryptable_wait_seconds") == 2.5


@pytest.mark.parametrize("text, expected", [("false", False), ("0", False), ("no", False), ("off", False),
                                            ("true", True), ("1", True), ("YES", True), ("on", True)])
def test_env_bool_key(text: str, expected: bool):
    raw = good()
    raw["homeserver"]["verify_tls"] = not expected
    assert load(raw, {"PRECINCT_HOMESERVER__VERIFY_TLS": text}).get("homeserver.verify_tls") is expected


def test_env_bad_int_names_the_key():
    message = refused(good(), {"PRECINCT_WEB__PORT": "eighty"})
    assert "web.port" in message and "environment" in message and "'eighty'" in message


def test_env_int_still_checked():
    assert refused(good(), {"PRECINCT_WEB__PORT": "70000"}).startswith("web.port:")


def test_env_bad_bool_names_the_key():
    """A typo must not quietly turn TLS verification off."""
    message = refused(good(), {"PRECINCT_HOMESERVER__VERIFY_TLS": "ture"})
    assert "homeserver.verify_tls" in message


def test_env_structured_key_is_yaml():
    agencies = '[{"id": "north", "name": "North", "officers": ["@n:police.example"]}]'
    raw = good()
    del raw["topics"]
    config = load(raw, {"PRECINCT_AGENCIES": agencies})
    assert [a.id for a in config.agencies] == ["north"]
    assert config.topics[0].agency == "north"


def test_load_file_reports_missing_and_invalid_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        cfg.load_file(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("homeserver: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfg.load_file(bad, environ={})


def test_load_file_resolves_paths_next_to_the_file(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(good()), encoding="utf-8")
    config = cfg.load_file(path, environ={})
    assert config.path("store.path") == tmp_path / "precinct.db"
    assert config.path("store.crypto_dir") == tmp_path / "crypto"


def test_site_consent_needs_a_privacy_notice_and_a_valid_emergency_number(tmp_path):
    raw = yaml.safe_load((Path(__file__).parents[2] / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["site"]["require_consent"] = True
    with pytest.raises(cfg.ConfigError, match="site.require_consent"):
        cfg.load(raw, tmp_path, {})
    raw["site"]["privacy_url"] = "not a url"
    with pytest.raises(cfg.ConfigError, match="site.privacy_url"):
        cfg.load(raw, tmp_path, {})
    raw["site"]["privacy_url"] = "https://police.example/privacy"
    assert cfg.load(raw, tmp_path, {}).get("site.require_consent") is True
    raw["site"]["emergency_number"] = "call us"
    with pytest.raises(cfg.ConfigError, match="site.emergency_number"):
        cfg.load(raw, tmp_path, {})


def test_agency_details_are_typed():
    raw = good()
    raw["agencies"][0].update(officers=["@o1:police.example", "police-north.example"], routing="auto",
                              timeouts={"unclaimed_seconds": 5}, present_officers_as="Officer {n}")
    agency = load(raw).agency("central")
    assert agency.officers == ("@o1:police.example",) and agency.officer_servers == ("police-north.example",)
    assert agency.is_officer("@anyone:police-north.example") and agency.is_officer("@sergeant1:police.example")
    assert not agency.is_officer("@o2:police.example") and agency.is_supervisor("@sergeant1:police.example")
    assert agency.timeouts.unclaimed_seconds == 5 and agency.timeouts.unanswered_seconds == 180
    assert agency.hours and agency.hours.weekly["sat"] == ((600, 960),) and "2026-12-25" in agency.hours.holidays
    assert agency.canned["999"].startswith("If anyone") and "knife" in agency.emergency["en"]


def test_federation_allowlist_must_be_server_names():
    raw = good()
    raw["federation"] = {"allowed_servers": ["police.example", "@user:police.example"]}
    assert refused(raw).startswith("federation.allowed_servers:")


def test_queue_cap_and_abandonment_per_agency_fall_back_to_the_global_keys(tmp_path):
    raw = good()
    raw["chats"] = {"max_waiting_per_agency": 40, "abandoned_seconds": 600}
    raw["agencies"] = [{"id": "a", "name": "A"}, {"id": "b", "name": "B", "max_waiting_chats": 0,
                                                  "timeouts": {"abandoned_seconds": 30}}]
    raw["topics"] = [{"id": "general", "label": "General enquiry", "agency": "a"}]
    config = cfg.load(raw, tmp_path, {})
    assert (config.max_waiting("a"), config.abandoned_seconds("a")) == (40, 600)
    assert (config.max_waiting("b"), config.abandoned_seconds("b")) == (0, 30)
    raw["chats"] = {"max_waiting_per_agency": -1}
    assert refused(raw).startswith("chats.max_waiting_per_agency:")
    raw["chats"] = {}
    raw["site"] = {"phone_number": "call us"}
    assert refused(raw).startswith("site.phone_number:")


@pytest.mark.parametrize("value, expected", [
    ({"burst": 5}, "limits.chats_per_address: expected {burst"),
    ({"burst": 5, "per_hour": 20, "per_day": 1}, "limits.chats_per_address: expected {burst"),
    ({"burst": 0, "per_hour": 20}, "limits.chats_per_address.burst: expected a whole number of at least 1"),
    ({"burst": 2.5, "per_hour": 20}, "limits.chats_per_address.burst"),
    ({"burst": 5, "per_hour": 0}, "limits.chats_per_address.per_hour: expected a number greater than 0"),
    ({"burst": 5, "per_hour": "many"}, "limits.chats_per_address.per_hour"),
    ("5 an hour", "limits.chats_per_address: expected {burst"),
])
def test_a_bad_rate_names_its_key(value: Any, expected: str):
    raw = good()
    raw.setdefault("limits", {})["chats_per_address"] = value
    assert expected in refused(raw)


def test_rates_are_token_bucket_rates_and_can_come_from_the_environment():
    config = load(good(), {"PRECINCT_LIMITS__UPLOADS_OVERALL": "{burst: 7, per_hour: 70}"})
    assert config.rate("limits.uploads_overall").burst == 7
    assert config.rate("limits.uploads_overall").per_second == pytest.approx(70 / 3600)
    assert config.rate("limits.chats_per_address").burst == 5


@pytest.mark.parametrize("value, expected", [
    (["10.0.0.0/8", "not-an-address"], "web.trusted_proxies: 'not-an-address' is not an IP address"),
    ("10.0.0.1", "web.trusted_proxies: expected a list"),
    (["10.0.0.0/33"], "web.trusted_proxies: '10.0.0.0/33'"),
])
def test_bad_trusted_proxies_name_the_key(value: Any, expected: str):
    raw = good()
    raw["web"]["trusted_proxies"] = value
    assert expected in refused(raw)


def test_trusted_proxies_take_addresses_and_ranges_of_both_families():
    raw = good()
    raw["web"]["trusted_proxies"] = ["127.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32"]
    assert load(raw).get("web.trusted_proxies") == ["127.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32"]


def test_the_refusal_window_is_bounded():
    raw = good()
    raw["records"]["refusal_window_seconds"] = 0
    assert "records.refusal_window_seconds: must be between 1 and 86400" in refused(raw)
