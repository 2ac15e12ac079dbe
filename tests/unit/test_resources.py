"""bridge/resources.py: what counts as running short, the descriptor reserve, and a shortage logged once a
minute however often it happens — including asyncio's accept loop at a real, lowered open-files limit."""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from bridge.resources import FreedHeap, OpenFiles, Shortages, is_shortage

ROOT = Path(__file__).parents[2]


def test_what_counts_as_running_short():
    assert is_shortage(OSError(errno.EMFILE, "Too many open files"))
    assert is_shortage(OSError(errno.ENFILE, "File table overflow"))
    assert is_shortage(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert is_shortage(MemoryError())
    assert is_shortage(sqlite3.OperationalError("unable to open database file"))
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as wrapped:
        assert is_shortage(wrapped)
    assert not is_shortage(OSError(errno.ECONNREFUSED, "refused"))
    assert not is_shortage(sqlite3.OperationalError("no such table: chats"))
    assert not is_shortage(ValueError("bad"))
    assert not is_shortage(None)


def test_reserve_is_an_eighth_of_the_limit_at_least_64_or_as_configured():
    open_now = [100]
    files = OpenFiles(count=lambda: open_now[0], limit=lambda: 1024, clock=lambda: 0.0)
    assert files.reserve == 128
    assert OpenFiles(count=lambda: 0, limit=lambda: 256).reserve == 64
    assert OpenFiles(300, count=lambda: 0, limit=lambda: 1024).reserve == 300
    assert files.free() == 924 and not files.short_for_chats() and not files.short_for_connections()
    open_now[0] = 900                              # counted again only after max_age
    assert files.open() == 100
    fresh = OpenFiles(count=lambda: open_now[0], limit=lambda: 1024, clock=lambda: 0.0, max_age=0)
    assert fresh.short_for_chats() and not fresh.short_for_connections()     # 124 free: < 128, >= 64
    open_now[0] = 970
    assert fresh.short_for_connections()


def test_connections_accepted_since_the_last_count_are_added_to_it():
    now = [0.0]
    files = OpenFiles(count=lambda: 100, limit=lambda: 1024, clock=lambda: now[0], max_age=1.0)
    assert files.open() == 100
    for _ in range(900):
        files.opened()
    assert files.open() == 1000 and files.short_for_connections()
    now[0] = 1.0                                  # a fresh count replaces the estimate
    assert files.open() == 100


def test_a_shortage_is_logged_once_then_at_most_once_per_interval_with_the_count(caplog):
    now = [0.0]
    shortages = Shortages(OpenFiles(count=lambda: 1000, limit=lambda: 1024), interval=60, clock=lambda: now[0])
    caplog.set_level(logging.ERROR, logger="bridge.resources")
    for i in range(10_000):
        now[0] = i * 0.01                         # 100 a second for 100 seconds
        shortages.report("accept", "new connections wait", OSError(errno.EMFILE, "Too many open files"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "resources short (accept)" in lines[0] and "1000 of 1024 file descriptors open" in lines[0]
    assert "Too many open files" in lines[0]
    assert "[5999 more since the last report 60 s ago]" in lines[1]
    assert shortages.reported == 10_000
    shortages.report("new chats", "refused")       # another kind has its own first line
    assert len(caplog.records) == 3


ACCEPT_FLOOD = textwrap.dedent("""
    import asyncio, logging, resource, socket, sys
    sys.path.insert(0, sys.argv[1])
    from bridge.resources import OpenFiles, Shortages, loop_exception_handler
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    held = []

    async def main():
        if sys.argv[2] == "tamed":
            asyncio.get_running_loop().set_exception_handler(loop_exception_handler(Shortages(OpenFiles())))
        def accepted(reader, writer):
            held.append(writer)                    # every accepted connection keeps its descriptor
        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = []
        for _ in range(120):                       # more than the limit: accept() runs out
            try:
                clients.append(socket.create_connection(("127.0.0.1", port)))
            except OSError:
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(3)                     # three of asyncio's one-second accept retries
        print("accepted", len(held), file=sys.stderr)
    asyncio.run(main())
""")


def _accept_flood(mode: str) -> list[str]:
    run = subprocess.run([sys.executable, "-c", ACCEPT_FLOOD, str(ROOT), mode], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stderr.splitlines()


def test_asyncio_accept_loop_at_the_open_files_limit_logs_one_line_not_thousands():
    untamed = [line for line in _accept_flood("plain") if "out of system resource" in line]
    tamed = _accept_flood("tamed")
    about = [line for line in tamed if "resources short" in line]
    assert len(untamed) > 50, f"asyncio's own logging changed ({len(untamed)} lines): revisit resources.py"
    assert len(about) == 1, tamed[-20:]
    assert "resources short (accept)" in about[0] and "Too many open files" in about[0]
    assert not [line for line in tamed if "out of system resource" in line and "resources short" not in line]


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_heap_freed_in_the_middle_is_given_back_to_the_system():
    """What a burst of chats frees below memory still in use stays resident (glibc trims only the heap's
    top) until FreedHeap gives it back. Real glibc: 64 MB in 16 kB blocks (heap, not mmap), written so
    they are resident, freed but for a block above them that pins the heap."""
    heap = FreedHeap(least_bytes=32 << 20)
    assert heap.supported, "this machine's Python runs on glibc 2.33 or later (Debian bookworm: 2.36)"
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(16 << 10) for _ in range(4096)]
    pin = libc.malloc(16 << 10)
    try:
        for b in blocks:
            ctypes.memset(b, 1, 16 << 10)
        for b in blocks:
            libc.free(b)
        free, before = heap.free_bytes(), _resident_bytes()
        assert free is not None and free >= 60 << 20
        assert heap.give_back() and heap.given_back == 1
        assert before - _resident_bytes() >= 48 << 20          # most of the 64 MB left the process
    finally:
        libc.free(pin)


def test_a_heap_with_little_free_is_left_alone():
    heap = FreedHeap(least_bytes=1 << 40)
    assert not heap.give_back() and heap.given_back == 0
