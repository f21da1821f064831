"""Token buckets (gateway/ratelimit.py), on a clock the test moves."""

from __future__ import annotations

from gateway import ratelimit
from gateway.ratelimit import KeyedBuckets, TokenBucket


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cost_is_taken_whole_or_not_at_all() -> None:
    """Guards against a refused request that still spends what it asked for."""
    clock = Clock()
    bucket = TokenBucket(10.0, 100, clock)
    assert bucket.take(60)
    assert not bucket.take(60)  # 40 left: refused, and nothing spent
    assert bucket.retry_after(60) == 2.0
    assert bucket.take(40)
    clock.now += 2.0
    assert bucket.take(20) and not bucket.take(1)


def test_a_cost_above_the_burst_costs_the_burst() -> None:
    """Guards against a request no refill can ever pay for (a limit above the burst)."""
    clock = Clock()
    bucket = TokenBucket(1.0, 10, clock)
    assert bucket.take(500)
    clock.now += 10.0
    assert bucket.take(500)


def test_each_key_has_its_own_bucket() -> None:
    """Guards against one address spending another's reads."""
    clock = Clock()
    buckets = KeyedBuckets(1.0, 2, clock)
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == 1.0
    assert buckets.take("b") == 0
    clock.now += 1.0
    assert buckets.take("a") == 0


def test_keys_gone_quiet_are_forgotten() -> None:
    """Guards against a map that grows with every address that ever read (a client
    with many addresses, IPv6, would fill the node's memory)."""
    clock = Clock()
    buckets = KeyedBuckets(5.0, 20, clock)
    for n in range(50_000):
        buckets.take(f"10.0.{n // 256}.{n % 256}")
        clock.now += 0.001  # 1,000 new addresses a second; each is full again in 0.2 s
    assert len(buckets) < 2048
    busy = KeyedBuckets(5.0, 20, clock)
    for n in range(ratelimit.MAX_KEYS + 10):  # all at once: none is full again
        busy.take(str(n))
    assert len(busy) <= ratelimit.MAX_KEYS
