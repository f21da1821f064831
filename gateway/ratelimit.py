"""Token buckets: `rate` tokens a second, at most `burst` saved up; and a set of them
kept by key (a user, a recipient, an address) that forgets the ones refilled to full."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]
MAX_KEYS = 100_000  # KeyedBuckets keeps at most this many buckets, whatever is asked


class TokenBucket:
    """Allows bursts of `burst`, then `rate` per second; a rate of 0 allows everything."""

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
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

    def ready(self) -> bool:
        """Whether a token is there now (none is spent: see `charge`)."""
        if self._rate <= 0:
            return True
        self._refill()
        return self._tokens >= 1

    def charge(self) -> None:
        """Spend one token after the fact, into debt if need be (at most a burst's worth):
        for a cost known only once the work is done, checked with `ready` before it."""
        if self._rate <= 0:
            return
        self._refill()
        self._tokens = max(self._tokens - 1, -self._burst)

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens will be there (0 when they are now)."""
        if self._rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, min(cost, self._burst) - self._tokens) / self._rate

    def wait(self) -> float:
        """Seconds until a token is there (0 when one is)."""
        return self.retry_after(1.0)

    def full(self) -> bool:
        """True once refilled to its burst: then it is no different from a new one."""
        if self._rate <= 0:
            return True
        now = self._clock()
        return self._tokens + (now - self._last) * self._rate >= self._burst


class KeyedBuckets:
    """One TokenBucket per key, all alike, created on first use.

    A bucket refilled to full is the same as none, so full ones are forgotten at most
    once per refill time and whenever the map has doubled since it was last pruned: it
    stays about as small as the set of keys that spent anything lately. Past
    MAX_KEYS // 2 busy keys the least recently used go too (they start afresh), so the
    map never holds more than MAX_KEYS.
    """

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_every = max(1.0, burst / rate) if rate > 0 else 0.0
        self._next_sweep = clock() + self._sweep_every
        self._prune_at = 1024
        self._unlimited = TokenBucket(0, 1, clock)

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, key: str) -> TokenBucket:
        """The bucket of `key` (a fresh, full one when it has none)."""
        if self._rate <= 0:
            return self._unlimited
        now = self._clock()
        if now >= self._next_sweep or len(self._buckets) >= self._prune_at:
            self._next_sweep = now + self._sweep_every
            self._prune()
        found = self._buckets.pop(key, None)  # re-inserted: the dict keeps use order
        if found is None:
            found = TokenBucket(self._rate, self._burst, self._clock)
        self._buckets[key] = found
        return found

    def take(self, key: str) -> float:
        """Spend one of `key`'s tokens: 0 when allowed, else the seconds to wait."""
        bucket = self.bucket(key)
        if bucket.take():
            return 0.0
        return max(bucket.retry_after(), math.ulp(1.0))

    def _prune(self) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full()}
        if len(self._buckets) >= MAX_KEYS // 2:  # the oldest go too: amortised, not per call
            self._buckets = dict(list(self._buckets.items())[-(MAX_KEYS // 4) :])
        self._prune_at = min(max(1024, 2 * len(self._buckets)), MAX_KEYS)
