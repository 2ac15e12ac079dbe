"""A valid configuration for unit tests: the example config with real-looking secrets."""
from __future__ import annotations

from pathlib import Path

import yaml

from bridge import config as cfg

ROOT = Path(__file__).parents[2]


def example_config(base_dir: Path) -> cfg.Config:
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    return cfg.load(raw, base_dir, {})
