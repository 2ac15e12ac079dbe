"""Chat sources as salted daily hashes, and blocks on them that outlive the daily salt rotation."""
from __future__ import annotations

from pathlib import Path

from bridge.store import Store
from bridge.store.sources import DAY_MS

NOON = 20_000 * DAY_MS + DAY_MS // 2


def dump(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob("precinct.db*"))


def test_the_address_is_never_stored_and_a_block_outlives_the_rotation(tmp_path: Path):
    store = Store.open(tmp_path / "precinct.db")
    try:
        s = store.sources
        s.remember("c1", "127.0.0.5", NOON)
        s.remember("c2", "127.0.0.6", NOON)
        assert b"127.0.0.5" not in dump(tmp_path / "precinct.db")
        block = s.block("c1", "@officer1:localhost", "hoax calls", 3 * 24 * 3600, NOON + 1000)
        assert block is not None and block.until_ts == NOON + 1000 + 3 * DAY_MS
        assert s.blocked("127.0.0.5", NOON + 2000) == s.active_block("c1", NOON + 2000)
        assert s.blocked("127.0.0.6", NOON + 2000) is None

        # Days later new chats hash under new salts; the block still finds the source, through its own day's salt.
        for day in (1, 2):
            s.remember(f"d{day}", "127.0.0.7", NOON + day * DAY_MS)
        salts = store.db.rows("SELECT day FROM source_salts ORDER BY day")
        assert [r["day"] for r in salts] == [20_000, 20_001, 20_002]       # day 20000 kept: the block needs it
        assert s.blocked("127.0.0.5", NOON + 2 * DAY_MS) is not None
        assert s.blocked("127.0.0.5", NOON + 3 * DAY_MS + 2000) is None    # the block's time is over

        # Once no block needs it, the old day's salt and its chats' hashes go at the next rotation.
        s.remember("d4", "127.0.0.7", NOON + 4 * DAY_MS)
        assert [r["day"] for r in store.db.rows("SELECT day FROM source_salts ORDER BY day")] == [20_004]
        assert store.db.row("SELECT * FROM chat_sources WHERE chat_id = 'c1'") is None
        assert s.block("c2", "@officer1:localhost", None, 3600, NOON + 4 * DAY_MS) is None   # unknown by now
    finally:
        store.close()


def test_unblock_lifts_only_that_chats_block(tmp_path: Path):
    store = Store.open(tmp_path / "precinct.db")
    try:
        s = store.sources
        for chat, address in (("c1", "10.1.1.1"), ("c2", "10.2.2.2")):
            s.remember(chat, address, NOON)
            assert s.block(chat, "@o:l", None, 3600, NOON) is not None
        assert s.unblock("c1", NOON + 1) == 1 and s.unblock("c1", NOON + 2) == 0
        assert s.blocked("10.1.1.1", NOON + 3) is None and s.blocked("10.2.2.2", NOON + 3) is not None
    finally:
        store.close()
