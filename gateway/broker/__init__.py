"""Brokers: where history, presence and cross-node delivery live."""

from __future__ import annotations

from gateway.broker.base import Broker
from gateway.config import Settings
from gateway.redis_url import CLUSTER_SCHEME


def create_broker(settings: Settings) -> Broker:
    """The broker the settings ask for: Redis for a redis:// URL (a Redis Cluster for
    redis+cluster://host:port,...), else in-process."""
    url = settings.redis_url
    if not url:
        from gateway.broker.memory import MemoryBroker

        return MemoryBroker(settings)
    if url.startswith(("redis://", "rediss://", "unix://", CLUSTER_SCHEME)):
        from gateway.broker.redis import RedisBroker

        return RedisBroker(settings)
    raise ValueError(
        f"unsupported broker URL {url!r}: expected redis://, rediss://, unix:// or redis+cluster://"
    )
