"""What a failed Redis call raises, and how the broker turns it into BrokerUnavailable.

Every part of the Redis broker catches these and only these: redis-py's errors, socket
errors, and the cluster client's own (a slot no primary serves, no reachable node), which
is no RedisError. A programming error is none of them and is never taken for an outage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisClusterException, RedisError

from gateway.errors import BrokerUnavailable

REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


@contextlib.contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Any Redis or socket error is BrokerUnavailable: the operation did not happen (on a
    cluster too: a slot no primary serves is a RedisClusterException)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(str(exc)) from exc
