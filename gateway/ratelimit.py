"""Token buckets: `rate` tokens a second, at most `burst` saved up; one, or one per key."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_KEYS = 100_000  # KeyedBuckets keeps at most this many buckets, whatever is asked


class TokenBucket:
    """Allows bursts of `burst`, then `rate` per second; a rate of 0 allows everything."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._clock = clock
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def take(self, cost: float = 1.0) -> bool:
        """Spend `cost` tokens (at most the burst); False, spending none, when fewer are left."""
        if self._rate <= 0:
            return True
        self._refill()
        cost = min(cost, self._burst)
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens will be there (0 when they are now)."""
        if self._rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, min(cost, self._burst) - self._tokens) / self._rate

    @property
    def full(self) -> bool:
        """True when the bucket has refilled to its burst: as good as a new one."""
        if self._rate <= 0:
            return True
        self._refill()
        return self._tokens >= self._burst


class KeyedBuckets:
    """One TokenBucket per key (a client address, say), created on first use.

    A full bucket is the same as no bucket, so full ones are dropped whenever the map
    doubles since it was last pruned: only keys active in the last `burst / rate`
    seconds are kept. Past MAX_KEYS // 2 active keys the oldest are dropped too (they
    start afresh), so the map never holds more than MAX_KEYS.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_at = 1024

    def take(self, key: str) -> float:
        """Spend one of `key`'s tokens: 0 when allowed, else the seconds to wait."""
        if self._rate <= 0:
            return 0.0
        bucket = self._buckets.pop(key, None)  # re-inserted: the dict keeps use order
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst, self._clock)
        if len(self._buckets) >= self._prune_at:
            self._prune()
        self._buckets[key] = bucket
        if bucket.take():
            return 0.0
        return max(bucket.retry_after(), math.ulp(1.0))

    def _prune(self) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
        if len(self._buckets) >= MAX_KEYS // 2:  # the oldest go too: amortised, not per call
            keep = list(self._buckets.items())[-(MAX_KEYS // 4) :]
            self._buckets = dict(keep)
        self._prune_at = min(max(1024, 2 * len(self._buckets)), MAX_KEYS)

    def __len__(self) -> int:
        return len(self._buckets)
