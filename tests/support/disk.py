"""A file system made full on purpose (tests/integration/test_chaos_store.py, bench/chaos_disk_full.py)."""
from __future__ import annotations

import os
from pathlib import Path


def fill(folder: Path) -> Path:
    """A file grown until the file system refuses another byte; its path (remove it to give the space back)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError:
                size //= 2                       # the last MB, then smaller, to the last byte
    finally:
        os.close(fd)
    return filler
