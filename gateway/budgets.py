"""The node's budgets: what a user, a connection and a client address may spend.

- Messages (`send` and `dm`): one bucket per user, shared by all of the user's
  connections on this node (`--rate-per-second`, `--rate-burst`). Kept per node, with
  no Redis round trip: a user with connections on N nodes may send N times as fast.
- Joins that are announced (a `presence` join the room sees): one bucket per connection
  (`--join-rate`, `--join-burst`) and one per client address (`--join-rate-per-ip`,
  `--join-burst-per-ip`). An entry that announces nothing (a reconnect within the grace
  period, another connection of a name already there) costs nothing; an entry is
  refused while either bucket is empty. Each announced join is followed by at most one
  leave, so the presence lines a connection or an address can cause are bounded too.
- Direct messages received: one budget per recipient, cluster-wide, kept by the broker
  (`--dm-recipient-rate`, `--dm-recipient-burst`); this module only counts its refusals.

Every refusal is counted in `chat_rate_limited_total{limit}`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gateway.config import Settings
from gateway.errors import ErrorCode, ProtocolError
from gateway.metrics import Metrics
from gateway.ratelimit import KeyedBuckets, TokenBucket

if TYPE_CHECKING:
    from gateway.session import Session

LIMITS = ("user", "recipient", "joins", "address")  # the values of the `limit` label


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


class Budgets:
    """The per-user and per-address buckets of one node, and the refusals' counters."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._users = KeyedBuckets(settings.rate_per_second, settings.rate_burst)
        self._addresses = KeyedBuckets(settings.join_rate_per_ip, settings.join_burst_per_ip)
        self._refused = {limit: metrics.rate_limited.labels(limit=limit) for limit in LIMITS}

    def connection_joins(self) -> TokenBucket:
        """A new connection's own bucket of announced joins."""
        return TokenBucket(self._settings.join_rate, self._settings.join_burst)

    def take_message(self, session: Session) -> bool:
        """Spend one message of the session's user; False (counted) when none is left."""
        if self._users.bucket(session.name_key).take():
            return True
        self._refused["user"].inc()
        return False

    def check_join(self, session: Session) -> None:
        """Raise `rate_limited` (with a `ref` of None) when the connection or its address
        has no announced join left; nothing is spent (`charge_join` does, afterwards)."""
        own = session.joins
        if not own.ready():
            self._refused["joins"].inc()
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"slow down: too many joins; try again in {_seconds(own.wait())} s",
            )
        shared = self._addresses.bucket(session.address)
        if not shared.ready():
            self._refused["address"].inc()
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many joins from your address; try again in {_seconds(shared.wait())} s",
            )

    def charge_join(self, session: Session) -> None:
        """The session's entry was announced as a join: spend it from both buckets."""
        session.joins.charge()
        self._addresses.bucket(session.address).charge()

    def refused_direct(self) -> None:
        """Count a direct message the broker refused for its recipient's budget."""
        self._refused["recipient"].inc()
