"""A valid configuration for unit tests: the example config with real-looking secrets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from bridge import config as cfg

ROOT = Path(__file__).parents[2]


def example_config(base_dir: Path) -> cfg.Config:
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    return cfg.load(raw, base_dir, {})


# What every test bridge sets for the key wait: when the homeserver's push skips an officer's room key for the
# bot (bench/README.md), the bot asks the officer to discard the session and send again once this wait is over;
# with the default minute, that path would not fit inside the tests' own deadlines (about a minute per step).
UNDECRYPTABLE_WAIT_SECONDS = 6


def crypto_section(**extra: object) -> dict[str, object]:
    """The ``crypto`` section of a test bridge's configuration."""
    return {"pickle_key": "placeholder", "undecryptable_wait_seconds": UNDECRYPTABLE_WAIT_SECONDS, **extra}


def write_registered(dir: Path, config: dict) -> Path:
    """Write a test bridge's ``config.yaml`` in ``dir`` and its registration (``generate-registration``, which puts
    fresh tokens in both); the registration's path, for the Synapse that loads it."""
    path, registration = dir / "config.yaml", dir / "registration.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run([sys.executable, "-m", "bridge", "generate-registration", "-c", str(path), "-o",
                    str(registration)], check=True, cwd=ROOT, capture_output=True)
    return registration
