"""Secrets at rest: files only their owner may read (0600) in folders only their owner may enter (0700).

The bridge's database (and SQLite's WAL and SHM files, which take the database file's mode), the
crypto stores, the registration, the config and the records signing key all hold secrets or
citizens' words.  Everything here sets modes explicitly, so the umask of whoever starts the bridge
does not matter; the command line also narrows the umask to 077 for whatever libraries create.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE, DIR_MODE = 0o600, 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) 0700; an existing folder is narrowed to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists and is 0600 (created empty if missing, never truncated)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    os.chmod(path, FILE_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, 0600 from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)                    # an older .tmp left with a wider mode
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def exposure(path: Path, what: str) -> str | None:
    """Why ``path`` must not be used as it is (group or others may read or write it), naming the fix; or None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"{what} {path} can be read by other users (mode {mode:04o}); run: chmod 600 {path}"
    return None


def tighten_tree(root: Path) -> int:
    """Narrow everything under ``root`` to owner-only (folders 0700, files 0600); how many were changed.

    For a data folder made by an older version, or under a looser umask: its secrets become private
    and it keeps working (the owner loses nothing)."""
    changed = 0
    for here, _, files in os.walk(root):
        for path in [Path(here), *(Path(here) / f for f in files)]:
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode) or mode & 0o077 == 0:
                continue
            os.chmod(path, DIR_MODE if stat.S_ISDIR(st.st_mode) else (mode & 0o700) | FILE_MODE)
            changed += 1
    return changed
