"""The supervisor console on the real bridge: served under /console with its own CSP; links for supervisors only."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import MatrixEnv

ROOT = Path(__file__).parents[2]


def console_link(env: MatrixEnv, user: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", "console", "link", user, "-c", str(env.config_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def audit_rows(env: MatrixEnv, action: str) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{env.dir / 'precinct.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT actor, outcome, origin FROM audit_log WHERE action = ? ORDER BY idx",
                            [action]).fetchall()
    finally:
        conn.close()


async def test_console_is_served_strictly_and_a_non_supervisor_gets_no_link(matrix_env: MatrixEnv, bridge_log):
    async with aiohttp.ClientSession() as s, s.get(matrix_env.public_url + "/console/") as r:
        text = await r.text()
        assert r.status == 401 and "!console" in text
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert "<script" not in text

    officer = matrix_env.officer_id("central")                  # an officer, not a supervisor
    result = console_link(matrix_env, officer)
    assert result.returncode == 1 and "not a supervisor" in result.stderr and "http" not in result.stdout
    assert (officer, "refused", "cli") in audit_rows(matrix_env, "console.link")
