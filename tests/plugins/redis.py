"""A Redis for the tests: a real `redis-server` on a free port (tooling/redis.py), or
fakeredis without one; and a local Redis Cluster, started once when first asked.

Set CHAT_TEST_REDIS=require (CI does) to fail instead of falling back to fakeredis.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
import redis

from gateway.broker.redis import RedisBroker
from gateway.config import Settings
from tooling.processes import find_tool
from tooling.redis import RedisServer
from tooling.redis_cluster import RedisCluster

REDIS_SERVER = find_tool("redis-server")
REDIS_CLI = find_tool("redis-cli")


def name_holders(client: redis.Redis, name_hash: str) -> list[bytes]:
    """The nodes holding a shared (auth) name: one `c:<connection>` field per connection."""
    fields: dict[bytes, bytes] = client.hgetall(name_hash)  # type: ignore[assignment]
    return sorted(node for field, node in fields.items() if field.startswith(b"c:"))


class RedisBackend:
    """What the suite's Redis tests run on: a real server, or fakeredis when none exists."""

    def __init__(self) -> None:
        required = os.environ.get("CHAT_TEST_REDIS") == "require"
        if REDIS_SERVER is None and required:
            raise RuntimeError("CHAT_TEST_REDIS=require, but there is no redis-server on PATH")
        self.server = RedisServer().start() if REDIS_SERVER else None
        self.fake = None if self.server else fakeredis.FakeServer()
        self._prefixes = itertools.count(1)

    @property
    def description(self) -> str:
        if self.server is not None:
            return f"real redis-server on port {self.server.port}"
        return "fakeredis (no redis-server on PATH: install it to test against real Redis)"

    def new_prefix(self) -> str:
        """A key prefix no other test uses."""
        return f"t{os.getpid()}-{next(self._prefixes)}:"

    def broker(self, settings: Settings, prefix: str) -> tuple[Settings, RedisBroker]:
        """Settings and a broker for one node on this backend, under `prefix`."""
        if self.server is not None:
            settings = replace(settings, redis_url=self.server.url, redis_prefix=prefix)
            return settings, RedisBroker(settings)
        settings = replace(settings, redis_url="redis://fakeredis", redis_prefix=prefix)
        return settings, RedisBroker(settings, fakeredis.FakeAsyncRedis(server=self.fake))

    def broker_of(
        self, kind: str, settings: Settings, prefix: str, request: pytest.FixtureRequest
    ) -> tuple[Settings, RedisBroker | None]:
        """Settings and a broker for one node of `broker_kind` `kind` under `prefix`:
        this backend ("redis"), the session's Redis Cluster ("cluster"), or None for the
        in-process broker ("memory": the caller makes its own)."""
        if kind == "redis":
            return self.broker(settings, prefix)
        if kind == "cluster":
            cluster = request.getfixturevalue("redis_cluster")
            settings = replace(settings, redis_url=cluster.url, redis_prefix=prefix)
            return settings, RedisBroker(settings)
        return settings, None

    def client(self) -> redis.Redis:
        """A plain synchronous client of this backend, for the tests' own checks."""
        if self.server is not None:
            return self.server.client()
        return fakeredis.FakeRedis(server=self.fake)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture(scope="session")
def redis_backend() -> Iterator[RedisBackend]:
    """The suite's Redis: one real redis-server (or fakeredis) for the whole run."""
    backend = RedisBackend()
    yield backend
    backend.close()


def _redis_mode() -> str:
    if REDIS_SERVER is None:
        return "redis: NO redis-server on PATH, so the Redis tests ran on fakeredis"
    return f"redis: the Redis tests ran on a real redis-server ({REDIS_SERVER})"


def pytest_report_header(config: pytest.Config) -> str:
    return _redis_mode()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(_redis_mode())


def cluster_or_skip() -> None:
    """Skip unless redis-server and redis-cli are there (fail if CHAT_TEST_REDIS=require)."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        if os.environ.get("CHAT_TEST_REDIS") == "require":
            pytest.fail("CHAT_TEST_REDIS=require, but redis-server or redis-cli is missing")
        pytest.skip("a Redis Cluster needs redis-server and redis-cli")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A local Redis Cluster (3 primaries, 3 replicas), started once, when first asked."""
    cluster_or_skip()
    # A longer node timeout than the fault tests' own clusters: a primary slow to answer
    # under a loaded CI machine must not be failed over in the middle of other tests.
    servers = RedisCluster(node_timeout=15000).start()
    yield servers
    servers.close()
