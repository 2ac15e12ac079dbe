"""The demo's configuration (bridge/devtools/demo.py) is the example rendered with the demo's values by config.py,
never the example's text edited afterwards; busy ports move for one run through the configuration's own
environment overrides and leave config.yaml as the person left it."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bridge import config as cfg
from bridge.devtools import demo


def test_values_replace_the_examples_and_every_comment_stays():
    example = cfg.render_example()
    text = cfg.render_example({"web.port": 18080, "homeserver.server_name": "demo.local",
                               "agencies": [{"id": "a", "name": "A", "officers": ["@o:demo.local"]}]})
    comments = [line for line in example.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in text.splitlines() if line.lstrip().startswith("#")]
    import yaml
    raw = yaml.safe_load(text)
    assert raw["web"]["port"] == 18080 and raw["homeserver"]["server_name"] == "demo.local"
    assert raw["agencies"] == [{"id": "a", "name": "A", "officers": ["@o:demo.local"]}]


def test_an_unknown_key_is_named():
    with pytest.raises(cfg.ConfigError, match="web.prot"):
        cfg.render_example({"web.prot": 1})


def test_the_demo_config_is_valid_with_fresh_secrets_and_its_ports(tmp_path: Path):
    ports = {"homeserver": 18008, "web": 18080, "appservice": 19330, "metrics": 19331}
    first, second = (tmp_path / "a.yaml"), (tmp_path / "b.yaml")
    first.write_text(demo.demo_config_text(ports))
    second.write_text(demo.demo_config_text(ports))
    a, b = cfg.load_file(first, environ={}), cfg.load_file(second, environ={})
    assert a.get("web.public_url") == "http://127.0.0.1:18080" and a.get("appservice.port") == 19330
    assert a.get("homeserver.url") == "http://127.0.0.1:18008" and a.get("metrics.port") == 19331
    assert a.get("appservice.as_token") != b.get("appservice.as_token")      # made for each demo, never shared
    assert a.get("crypto.pickle_key") != b.get("crypto.pickle_key")
    assert [t.agency for t in a.topics] and {t.agency for t in a.topics} == {demo.AGENCY_ID}


def test_a_busy_port_moves_for_the_run_and_the_file_is_left_alone(tmp_path: Path):
    files = demo.DemoFiles(tmp_path / "demo-data")
    demo.prepare_data_dir(files)
    config = demo.ensure_config(files, free_ports=True)       # not 8080: a person's demo may hold it
    before = files.config.read_bytes()
    busy = socket.socket()
    busy.bind(("127.0.0.1", config.get("web.port")))
    busy.listen()
    try:
        moved = demo.ensure_config(files)
    finally:
        busy.close()
    assert moved.get("web.port") != config.get("web.port")
    assert moved.get("web.public_url") == f"http://127.0.0.1:{moved.get('web.port')}"
    assert files.config.read_bytes() == before
    assert f"127.0.0.1:{moved.get('appservice.port')}" in files.registration.read_text()
    assert not any(k.startswith("PRECINCT_") for k in os.environ if k.endswith("__PORT"))  # the process env untouched
