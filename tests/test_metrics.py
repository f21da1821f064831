"""The metrics the dashboard (deploy/grafana/chat-gateway.json) needed and /metrics
lacked, each read off a running node's /metrics after the thing it counts happened."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.broker.redis import RedisBroker
from gateway.broker.redis_scripts import Keys
from gateway.errors import ErrorCode
from gateway.node import NODE
from tests.conftest import (
    JSON_PROTOCOL,
    TEST_SETTINGS,
    join_json,
    join_text,
    metric,
    poll_until,
    read_metric,
)
from tests.plugins.redis import REDIS_SERVER, RedisBackend
from tooling.rawsocket import RawWebSocket
from tooling.redis import RedisServer

WAIT = 5.0


async def metrics_text(client: TestClient) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def until_metric(client: TestClient, sample: str, wanted: float) -> None:
    """Read /metrics until `sample` is `wanted` (bounded by WAIT)."""
    async with asyncio.timeout(WAIT):
        while await read_metric(client, sample, missing=-1) != wanted:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the node changes it in the background: a poll


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_connections_opened_counts_every_upgrade_by_mode(client: TestClient) -> None:
    """Guards against a dashboard that cannot tell churn from load: the open count
    (a gauge) stays flat while clients reconnect in a loop; the opened count rises."""
    for run in range(3):
        peer = await join_json(client, f"j{run}")
        await peer.ws.close()
    await join_text(client, "t")
    assert await read_metric(client, 'chat_connections_opened_total{mode="json"}') == 3
    assert await read_metric(client, 'chat_connections_opened_total{mode="text"}') == 1
    await until_metric(client, 'chat_connections{mode="json"}', 0)


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_rooms_counts_the_rooms_with_a_connection_here(client: TestClient) -> None:
    """Guards against a rooms panel that counts rooms nobody is in any more."""
    assert await read_metric(client, "chat_rooms") == 0
    await join_json(client, "a", room="lobby")
    other = await join_json(client, "b", room="other")
    assert await read_metric(client, "chat_rooms") == 2
    await other.ws.close()
    await until_metric(client, "chat_rooms", 1)


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_send_queue_bytes_shows_a_reader_that_stalled(gateway: Any) -> None:
    """Guards against a stuck reader being invisible until it is cut: what waits for
    it shows as bytes, and goes back to 0 once it is gone."""
    client: TestClient = await gateway(send_queue_limit=64_000_000, rate_per_second=0)
    stalled = await RawWebSocket.connect(
        client.host, client.port, "name=slow&room=lobby", JSON_PROTOCOL
    )
    try:
        await stalled.read_until_text(b'"type":"subscribed"')  # and never reads again
        writer = await join_json(client, "writer")
        assert await read_metric(client, "chat_send_queue_bytes") == 0
        # Bounded: the kernel's buffers (a few MB on loopback) fill first, then ours.
        for _ in range(4000):
            ack = await writer.request("send", room="lobby", text="z" * 3000)
            assert ack["type"] == "ack", ack
            if await read_metric(client, "chat_send_queue_bytes") > 0:
                break
        assert await read_metric(client, "chat_send_queue_bytes") > 0
    finally:
        stalled.close()
    await until_metric(client, "chat_send_queue_bytes", 0)


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_frames_refused_counts_a_frame_too_large(client: TestClient) -> None:
    """Guards against connections closed 1009 for oversized frames going uncounted (they
    are no error answer: the frame is never read)."""
    assert await read_metric(client, 'chat_frames_refused_total{reason="too_large"}') == 0
    peer = await join_json(client, "big")
    await peer.ws.send_str("x" * 70_000)
    assert await peer.close_code() == 1009
    assert await read_metric(client, 'chat_frames_refused_total{reason="too_large"}') == 1
    assert await read_metric(client, 'chat_frames_refused_total{reason="protocol"}') == 0


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_every_error_code_has_a_series_from_the_start(client: TestClient) -> None:
    """Guards against an alert on a code's error rate missing the first burst: a series
    that appears at 1 shows no increase, so each code is there at 0 before any error."""
    text = await metrics_text(client)
    for code in ErrorCode:
        assert metric(text, f'chat_errors_total{{code="{code.value}"}}') == 0


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_the_in_process_broker_is_ready_and_has_no_redis(client: TestClient) -> None:
    """Guards against a node without Redis showing a Redis that is down."""
    text = await metrics_text(client)
    assert metric(text, "chat_ready") == 1
    assert "chat_redis_shard_up{" not in text
    assert metric(text, "chat_nodes_reaped_total") == 0


async def test_ready_and_redis_shard_up_follow_redis(aiohttp_client: Any) -> None:
    """Guards against a dashboard that shows a node ready, or its Redis up, while the
    node's Redis is gone (and against them not coming back)."""
    if REDIS_SERVER is None:
        if os.environ.get("CHAT_TEST_REDIS") == "require":
            pytest.fail("CHAT_TEST_REDIS=require, but there is no redis-server on PATH")
        pytest.skip("needs redis-server: a Redis of the test's own, stopped")
    server = RedisServer().start()
    try:
        settings = replace(TEST_SETTINGS, redis_url=server.url)
        client: TestClient = await aiohttp_client(create_app(settings, RedisBroker(settings)))
        shard = f'chat_redis_shard_up{{shard="127.0.0.1:{server.port}"}}'
        await until_metric(client, "chat_ready", 1)
        assert await read_metric(client, shard) == 1
        server.stop()
        await until_metric(client, "chat_ready", 0)
        assert await read_metric(client, shard) == 0
        server.start()
        await until_metric(client, shard, 1)
    finally:
        server.close()


@pytest.mark.parametrize("broker_kind", ["cluster"])
async def test_redis_shard_up_has_a_series_per_cluster_shard(client: TestClient) -> None:
    """Guards against a Redis Cluster shown as one Redis: each primary is a series."""

    async def shards() -> list[str]:
        text = await metrics_text(client)
        return [line for line in text.splitlines() if line.startswith("chat_redis_shard_up{")]

    async with asyncio.timeout(WAIT):
        while len(await shards()) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the shards are subscribed in the background
    assert all(line.endswith(" 1.0") for line in await shards())


@pytest.mark.parametrize("broker_kind", ["redis"])
async def test_nodes_reaped_counts_a_dead_node_removed(
    gateway: Any, redis_backend: RedisBackend
) -> None:
    """Guards against crashes that leave no trace on the dashboard: a node listed with
    no heartbeat (it died) is reaped by a live one, which counts it."""
    client: TestClient = await gateway()
    await join_json(client, "alive")
    prefix = client.app[NODE].settings.redis_prefix
    redis = redis_backend.client()
    redis.sadd(Keys(prefix).nodes, "ghost")  # listed, and no `P node:{ghost}:alive`
    await until_metric(client, "chat_nodes_reaped_total", 1)
    await poll_until(lambda: not redis.sismember(Keys(prefix).nodes, "ghost"))
