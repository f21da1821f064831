"""The typed client of the Redis broker (gateway/broker/redis/client.py) fits the
clients it stands for: redis-py's `Redis` and `RedisCluster`, and fakeredis's.

mypy takes `as_client`'s word that it does (redis-py types replies as `bytes | str`),
so these tests check what mypy cannot: every method the protocols name exists on each
client, and takes the keyword arguments the broker passes it by name.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Protocol

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis, RedisCluster

from gateway.broker.redis.client import RedisClient, RedisPipeline, SubscriptionClient

CLIENTS = ["redis", "cluster", "fakeredis"]


@pytest.fixture(params=CLIENTS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Redis | RedisCluster]:
    """A client of each kind, never connected (no server is needed to look at it)."""
    made: Redis | RedisCluster
    if request.param == "redis":
        made = Redis.from_url("redis://127.0.0.1:1/0")
    elif request.param == "cluster":
        made = RedisCluster(host="127.0.0.1", port=1)
    else:
        made = FakeAsyncRedis()
    yield made
    await made.aclose()


def methods(protocol: type) -> dict[str, inspect.Signature]:
    """The methods `protocol` declares (its own and its protocol bases'), by name."""
    found: dict[str, inspect.Signature] = {}
    for cls in reversed(protocol.__mro__):
        if cls in (object, Protocol) or not getattr(cls, "_is_protocol", False):
            continue
        for name, value in vars(cls).items():
            if inspect.isfunction(value) and (not name.startswith("_") or name in DUNDERS):
                found[name] = inspect.signature(value)
    return found


DUNDERS = ("__aenter__", "__aexit__")


def unfit(real: object, protocol: type) -> list[str]:
    """What `real` lacks of `protocol`: a method, or a parameter the protocol names."""
    problems = []
    for name, wanted in methods(protocol).items():
        method = getattr(real, name, None)
        if not callable(method):
            problems.append(f"{name}: missing")
            continue
        have = inspect.signature(method).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in have.values())
        for param in list(wanted.parameters.values())[1:]:  # after self
            if param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue  # never passed by name
            if param.name not in have and not takes_any:
                problems.append(f"{name}: no parameter {param.name!r}")
    return problems


def test_the_protocols_name_methods() -> None:
    """Guards against a check that looks at nothing: the protocols list their methods."""
    assert {"execute_command", "pubsub"} <= methods(SubscriptionClient).keys()
    assert {"execute_command", "pipeline", "smembers", "scan_iter"} <= methods(RedisClient).keys()
    assert {"execute", "xrange", "__aenter__"} <= methods(RedisPipeline).keys()


async def test_each_client_has_the_commands_the_broker_sends(
    client: Redis | RedisCluster,
) -> None:
    """Guards against a command in `RedisClient` that a client lacks or spells another
    way (mypy believes `as_client`): an AttributeError or TypeError on that path."""
    assert unfit(client, RedisClient) == []
    assert isinstance(client, RedisClient)


async def test_each_clients_pipeline_has_the_commands_the_broker_queues(
    client: Redis | RedisCluster,
) -> None:
    """Guards against a command queued on a pipeline that the pipeline lacks."""
    pipe = client.pipeline(transaction=False)
    assert unfit(pipe, RedisPipeline) == []
    assert isinstance(pipe, RedisPipeline)


def test_a_subscription_client_is_what_a_shard_subscriber_is_given() -> None:
    """Guards against `Subscriber` asking more of its client than a plain Redis has."""
    assert unfit(Redis, SubscriptionClient) == []
