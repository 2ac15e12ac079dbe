"""The command line refuses a bad configuration before starting anything."""
from __future__ import annotations

import os
import shutil
import stat
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


def run_022(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """As an operator whose shell has the common umask 022 (new files world-readable by default)."""
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.umask(0o022))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_registration_writes_owner_only_files_and_run_refuses_readable_secrets(tmp_path: Path):
    config, registration = tmp_path / "config.yaml", tmp_path / "registration.yaml"
    shutil.copy(ROOT / "example-config.yaml", config)
    os.chmod(config, 0o644)
    assert run_022("generate-registration", "-c", str(config), "-o", str(registration)).returncode == 0
    assert (mode(config), mode(registration)) == (0o600, 0o600)

    os.chmod(registration, 0o644)
    result = run_022("run", "-c", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"appservice registration {registration}" in result.stderr and f"chmod 600 {registration}" in result.stderr
    os.chmod(registration, 0o600)
    os.chmod(config, 0o640)
    result = run_022("run", "-c", str(config))
    assert result.returncode == 2 and f"configuration file {config}" in result.stderr
    assert f"chmod 600 {config}" in result.stderr and "appservice registration" not in result.stderr


def test_run_refuses_a_readable_records_signing_key(tmp_path: Path):
    config = tmp_path / "config.yaml"
    shutil.copy(ROOT / "example-config.yaml", config)
    assert run_022("generate-registration", "-c", str(config), "-o", str(tmp_path / "registration.yaml")).returncode == 0
    key = tmp_path / "records-signing.key"
    key.write_text("not yet a key")
    os.chmod(key, 0o644)
    result = run_022("run", "-c", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"records signing key {key}" in result.stderr and f"chmod 600 {key}" in result.stderr


def test_the_running_bridge_keeps_its_secrets_owner_only(matrix_env):
    """The session's bridge (started by `run` from pytest, umask as it comes): what it made is private."""
    dir = matrix_env.dir
    files = [dir / "precinct.db", dir / "precinct.db-wal", dir / "precinct.db-shm", matrix_env.registration_path,
             matrix_env.config_path, *(p for p in (dir / "crypto").rglob("*") if p.is_file())]
    assert len(files) >= 6 and all(f.exists() for f in files)
    assert {str(f): oct(mode(f)) for f in files if mode(f) != 0o600} == {}
    assert {str(d): oct(mode(d)) for d in [dir / "crypto", *(p for p in (dir / "crypto").rglob("*") if p.is_dir())]
            if mode(d) != 0o700} == {}
