"""The in-process token buckets behind the failed-auth throttle and the Redis-down rate-limit fallback."""

from __future__ import annotations

from taifa_api.domain.throttle import RecentlySeen, TokenBuckets, client_group


def test_a_bucket_allows_capacity_then_refills_evenly_over_the_window() -> None:
    buckets = TokenBuckets(3, 60)
    assert [buckets.take("a", 0.0) for _ in range(4)] == [0, 0, 0, 20]
    assert buckets.take("a", 19.0) == 1  # one token every 20 s
    assert buckets.take("a", 20.0) == 0
    assert buckets.take("b", 20.0) == 0  # keys are independent


def test_a_token_given_back_is_not_counted() -> None:
    buckets = TokenBuckets(2, 3600)
    for _ in range(10):
        assert buckets.take("a", 0.0) == 0
        buckets.give_back("a", 0.0)
    assert len(buckets) == 0  # a full bucket is forgotten


def test_memory_is_bounded_by_dropping_the_least_recently_touched() -> None:
    buckets = TokenBuckets(1, 3600, max_keys=100)
    for n in range(1000):
        buckets.take(f"addr{n}", 0.0)
    assert len(buckets) == 100
    assert buckets.take("addr999", 0.0) > 0 and buckets.take("addr0", 0.0) == 0


def test_clients_are_grouped_by_ipv4_address_and_ipv6_64() -> None:
    assert client_group("203.0.113.7") == "203.0.113.7"
    assert client_group("2001:db8:1:2::a") == client_group("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_group("2001:db8:1:3::a") != client_group("2001:db8:1:2::a")
    assert client_group("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_group(None) == "unknown"


def test_recently_seen_keys_expire_and_stay_bounded() -> None:
    seen = RecentlySeen(ttl_seconds=300, max_keys=10)
    seen.add(b"k", 0.0)
    assert seen.seen(b"k", 300.0) and not seen.seen(b"k", 300.1)
    for n in range(100):
        seen.add(bytes([n]), 0.0)
    assert len(seen) == 10 and seen.seen(bytes([99]), 1.0) and not seen.seen(bytes([0]), 1.0)
    seen.discard(bytes([99]))
    assert not seen.seen(bytes([99]), 1.0)
