"""What the subscription's state machine (`subscription.Subscription`) asks its I/O part
to do: one small immutable value per kind of action."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a new connection and subscribe `channels` on it (one command per slot when
    sharded); a failure is reported as `lost`."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SubscribeChannel:
    """Subscribe `channel` on the current connection; a failure is `command_failed`."""

    channel: str


@dataclass(frozen=True, slots=True)
class UnsubscribeChannel:
    """Unsubscribe `channel` on the current connection; a failure is `command_failed`."""

    channel: str


@dataclass(frozen=True, slots=True)
class SendProbe:
    """Publish `token` on the probe channel (a failure needs no report: it stays away)."""

    token: str


@dataclass(frozen=True, slots=True)
class FillGap:
    """Fill the gap of `channels` (on a shard, after checking its node is a primary),
    then report `filled`, or `lost` if that failed."""

    channels: frozenset[str]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand a channel message to the application."""

    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MarkLive:
    """The subscription is up: wake who waits for it."""


@dataclass(frozen=True, slots=True)
class MarkUnready:
    """The subscription is not up (any more)."""


@dataclass(frozen=True, slots=True)
class Lost:
    """Tell the owner the subscription was lost or is deaf (a cluster reads its map)."""


@dataclass(frozen=True, slots=True)
class Renew:
    """Ask the reading side to end the current connection (it then reports `lost`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the current connection (its reader is stopped already) and fail whoever
    waits for a subscribe acknowledgement on it."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait `delay` seconds, then report `backoff_over`. `was_live`: whether any
    connection went live before (for the log: lost, or not subscribed yet)."""

    delay: float
    reason: str
    was_live: bool


Action = (
    Connect
    | SubscribeChannel
    | UnsubscribeChannel
    | SendProbe
    | FillGap
    | Deliver
    | MarkLive
    | MarkUnready
    | Lost
    | Renew
    | Drop
    | Wait
)
