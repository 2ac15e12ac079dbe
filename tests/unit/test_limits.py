"""Token buckets per source and overall (bridge/limits.py), with a fake clock; the real bridge is in
tests/integration/test_admission_limits.py."""
from __future__ import annotations

from bridge.limits import KeyedBuckets, Limit, Rate, Refusal, source_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_source_gets_its_burst_then_waits_while_others_still_get_in():
    clock = Clock()
    limit = Limit("chats", Rate(3, 60), Rate(100, 3600), clock)       # 60 an hour: one a minute
    assert [limit.take("203.0.113.7") for _ in range(3)] == [None, None, None]
    refused = limit.take("203.0.113.7")
    assert refused == Refusal(60, "per_address")
    assert limit.take("198.51.100.1") is None
    clock.now += 60
    assert limit.take("203.0.113.7") is None
    assert limit.take("203.0.113.7") == Refusal(60, "per_address")


def test_many_sources_meet_the_overall_bucket_and_a_refused_request_takes_nothing():
    clock = Clock()
    limit = Limit("chats", Rate(5, 60), Rate(4, 360), clock)          # overall: one every 10 s
    assert [limit.take(f"198.51.100.{i}") for i in range(4)] == [None] * 4
    assert limit.take("198.51.100.9") == Refusal(10, "overall")
    assert limit.take("198.51.100.9") == Refusal(10, "overall")
    assert len(limit.per_source) == 4            # the refused source got no bucket: memory only for admitted ones
    clock.now += 10
    assert limit.take("198.51.100.9") is None
    # A source refused by its own bucket leaves the overall tokens to others.
    limit = Limit("chats", Rate(1, 1), Rate(2, 1), clock)
    assert limit.take("a") is None
    assert limit.take("a").scope == "per_address"            # type: ignore[union-attr]
    assert limit.take("b") is None


def test_retry_after_is_whole_seconds_at_least_one():
    clock = Clock()
    limit = Limit("uploads", Rate(1, 36000), Rate(10, 36000), clock)  # ten a second
    assert limit.take("a") is None
    assert limit.take("a") == Refusal(1, "per_address")


def test_ipv6_sources_are_counted_per_64():
    clock = Clock()
    limit = Limit("chats", Rate(2, 1), Rate(100, 1), clock)
    assert limit.take("2001:db8:1:2::1") is None
    assert limit.take("2001:db8:1:2:ffff::9") is None
    assert limit.take("2001:db8:1:2:abcd::1") is not None     # the same /64
    assert limit.take("2001:db8:1:3::1") is None              # the next /64
    assert source_key("203.0.113.7") == "203.0.113.7"
    assert source_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert source_key("") == ""


def test_full_buckets_are_forgotten_so_memory_stays_bounded():
    clock = Clock()
    buckets = KeyedBuckets(2, 1.0, clock)
    buckets.PRUNE_AT = 10
    for i in range(10):
        buckets.bucket(f"s{i}", clock()).take(clock())
    clock.now += 100                                         # all refilled: the same as never seen
    buckets.bucket("new", clock())
    assert len(buckets) == 1
