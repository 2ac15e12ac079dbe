"""Everything an air-gapped install needs, gathered into one folder on a connected machine (issue 12).

    python -m bridge.devtools.wheelhouse DEST [--extras test] [--node tests/interop ...]

    DEST/python/        the project's wheel and a wheel of every package it needs (pip wheel), and the
                        build backend pyproject.toml names, so a checkout installs offline too
                        (``pip install --no-index -e .`` builds in isolation from them; ``make demo
                        WHEELHOUSE=DEST``)
    DEST/npm/           an npm cache holding every package of each --node folder's lockfile, which
                        ``npm ci --offline --cache DEST/npm`` installs from with no registry
    DEST/debian-packages.txt
                        the Debian packages to fetch on a connected machine of the same release
    DEST/INSTALL.md     how to install from the folder, written for the operator
    DEST/SHA256SUMS     every file's hash, to check the copy that crossed the air gap (sha256sum -c)

``make wheelhouse`` gathers the full set (the tests' extras and both Node folders, so the test suite can
run offline too); ``make test`` gathers the runtime part into tests/artifacts/offline-kit, from which
tests/integration/test_offline_install.py installs with every index unreachable.
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What the bridge needs from Debian to run (Python 3.11 with venv), and what `make test` needs beyond that.
DEBIAN_RUNTIME = ["python3", "python3-venv"]
DEBIAN_TESTS = ["chromium", "make", "nginx", "nodejs", "npm", "postgresql", "redis-server"]

INSTALL = """\
# Installing Precinct without internet access

This folder was made on a connected machine by `make wheelhouse` (bridge/devtools/wheelhouse.py) for
{built_for}.
Some of its wheels are compiled for that Python version and processor (vodozemac, psycopg2, Synapse), so
the offline machine needs the same: that release's `python3` on the same architecture.
Copy the folder whole to the machine that will run the bridge, then check it arrived intact:

    cd {folder} && sha256sum -c SHA256SUMS

## Debian packages
On a connected machine of the same Debian release and architecture, with none of them installed yet (a
fresh container of that release will do: apt downloads only what is missing), fetch the packages listed
in `debian-packages.txt` with everything they depend on, into an empty folder:

    apt-get update && mkdir -p debs/partial
    apt-get install --download-only -o Dir::Cache::archives="$PWD/debs" $(grep -v '^#' debian-packages.txt)

Carry `debs/*.deb` across and install them on the offline machine:

    apt-get install ./debs/*.deb

## The bridge
    python3 -m venv /opt/precinct/venv
    /opt/precinct/venv/bin/pip install --no-index --find-links python precinct{extras}

`--no-index` keeps pip away from every package index: it installs from this folder or fails.
Then continue with docs/deployment.md (configuration, registration, systemd).

## From a checkout of the same commit: the demo, the test suite
`make` takes every package from this folder and asks no index when given it (Synapse comes with the tests'
extras; Element, the officers' client, is not part of the kit):

    make demo WHEELHOUSE=/path/to/{folder}
    make install node browser WHEELHOUSE=/path/to/{folder}    # what `make test` needs, Node folders: {node_folders}

Run `sha256sum -c` before: npm writes into its cache (`npm/`) even offline.
"""


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True, stdin=subprocess.DEVNULL)


def python_wheels(dest: Path, extras: str | None) -> None:
    """The project and every package it needs, as wheels (from PyPI or pip's cache)."""
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    with tempfile.TemporaryDirectory() as build:        # pip builds our own wheel in a copy, not in the checkout
        shutil.copytree(ROOT, Path(build) / "src", ignore=shutil.ignore_patterns(
            ".venv", ".git", "node_modules", "tests", "demo-data", "wheelhouse", "build", "*.egg-info", "__pycache__"))
        target = target.replace(str(ROOT), str(Path(build) / "src"))
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), target])
    # pip builds an editable install (a checkout's `make demo`) in an isolated environment of these, which an
    # offline machine can only fill from this folder.
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), *backend])


def npm_cache(dest: Path, folders: list[Path]) -> None:
    """Fill an npm cache with each folder's locked packages, installing into a throw-away copy (the
    checkout's own node_modules are left alone)."""
    for folder in folders:
        with tempfile.TemporaryDirectory() as scratch:
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(folder / name, Path(scratch) / name)
            _run(["npm", "ci", "--cache", str(dest), "--no-audit", "--no-fund", "--loglevel=error"], cwd=Path(scratch))


def built_for() -> str:
    """The Python, processor and system the compiled wheels were gathered for, in words."""
    release = "an unknown system"
    os_release = Path("/etc/os-release")
    if os_release.exists():
        for line in os_release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                release = line.split("=", 1)[1].strip('"')
    return (f"CPython {sys.version_info.major}.{sys.version_info.minor} on {platform.machine()}"
            f" (gathered on {release})")


def checksums(folder: Path) -> None:
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        if "_logs" in path.relative_to(folder).parts:
            continue                                  # npm's own run logs: not part of the kit
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(folder)}")
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def build(dest: Path, extras: str | None = None, node: list[Path] | None = None) -> Path:
    """Gather the kit into ``dest`` (made anew)."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "python").mkdir(parents=True)
    python_wheels(dest / "python", extras)
    node = node or []
    if node:
        npm_cache(dest / "npm", node)
        shutil.rmtree(dest / "npm" / "_logs", ignore_errors=True)
    debian = DEBIAN_RUNTIME + (DEBIAN_TESTS if extras or node else [])
    (dest / "debian-packages.txt").write_text("# Debian packages Precinct needs (see INSTALL.md)\n"
                                              + "\n".join(debian) + "\n")
    (dest / "INSTALL.md").write_text(INSTALL.format(
        built_for=built_for(), folder=dest.name, extras=f"'[{extras}]'" if extras else "",
        node_folders=", ".join(str(p.relative_to(ROOT)) for p in node) or "(none gathered)"))
    checksums(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.devtools.wheelhouse", description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--extras", help="extras of the project to gather too (e.g. test)")
    parser.add_argument("--node", type=Path, action="append", default=[],
                        help="a folder with package.json and package-lock.json whose packages to gather")
    args = parser.parse_args(argv)
    build(args.dest.resolve(), args.extras, [p.resolve() for p in args.node])
    print(f"wheelhouse ready: {args.dest} (see {args.dest / 'INSTALL.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
