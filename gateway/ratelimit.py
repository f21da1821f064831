"""Token buckets: `rate` tokens a second, at most `burst` saved up; and a set of them
kept by key (a user, a recipient, an address) that forgets the ones refilled to full."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


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

    def take(self) -> bool:
        """Spend one token; False when none is left."""
        if self._rate <= 0:
            return True
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
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

    def wait(self) -> float:
        """Seconds until a token is there (0 when one is)."""
        if self._rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, (1 - self._tokens) / self._rate)

    def full(self) -> bool:
        """True once refilled to its burst: then it is no different from a new one."""
        if self._rate <= 0:
            return True
        now = self._clock()
        return self._tokens + (now - self._last) * self._rate >= self._burst


class KeyedBuckets:
    """One TokenBucket per key, all alike. A bucket that has refilled to full is
    forgotten (now and then, at most once per refill time): a new one is the same, and
    the map stays as small as the set of keys that spent anything lately."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_every = max(1.0, burst / rate) if rate > 0 else 0.0
        self._next_sweep = clock() + self._sweep_every
        self._unlimited = TokenBucket(0, 1, clock)

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, key: str) -> TokenBucket:
        """The bucket of `key` (a fresh, full one when it has none)."""
        if self._rate <= 0:
            return self._unlimited
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            self._buckets = {k: b for k, b in self._buckets.items() if not b.full()}
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = TokenBucket(self._rate, self._burst, self._clock)
        return found
