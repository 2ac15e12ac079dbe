"""The command line refuses a bad configuration before starting anything."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_run_refuses_example_secrets_and_names_the_key():
    result = run("run", "-c", str(ROOT / "example-config.yaml"))
    assert result.returncode == 2
    assert "appservice.as_token" in result.stderr and "example value" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_names_a_bad_key(tmp_path: Path):
    config = tmp_path / "config.yaml"
    shutil.copy(ROOT / "example-config.yaml", config)
    assert run("generate-registration", "-c", str(config), "-o", str(tmp_path / "reg.yaml")).returncode == 0
    text = config.read_text().replace("port: 8080", "port: eighty")
    config.write_text(text)
    result = run("run", "-c", str(config))
    assert result.returncode == 2 and "web.port" in result.stderr and "expected int" in result.stderr
    config.write_text(text.replace("port: eighty", "port: 8080").replace("server_name: police.example\n", "", 1))
    result = run("run", "-c", str(config))
    assert result.returncode == 2 and "homeserver.server_name: missing" in result.stderr
    result = run("run", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "not found" in result.stderr
