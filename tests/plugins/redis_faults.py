"""Redis failures in the tests: a redis-server of the test's own (`own_redis`), nodes
on it (`node_on`), readiness waits and sends retried until acked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from tests.conftest import TEST_SETTINGS, JsonPeer
from tests.plugins.redis import REDIS_SERVER
from tooling.redis import RedisServer

needs_redis_server = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs a real redis-server (CI installs one)"
)


async def wait_ready(client: TestClient, ready: bool, timeout: float = 15.0) -> None:
    """Poll /readyz (bounded) until it says `ready`."""
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get("/readyz")
            if (response.status == 200) == ready:
                return
            await asyncio.sleep(0.05)


async def send_until_acked(peer: JsonPeer, text: str, timeout: float = 15.0) -> dict[str, Any]:
    """Send with one id until it is acked (as a client retrying after `unavailable` does)."""
    return await request_until_acked(peer, "send", timeout, room="lobby", text=text, id=text)


async def request_until_acked(
    peer: JsonPeer, frame_type: str, timeout: float = 15.0, **fields: Any
) -> dict[str, Any]:
    """Send one request again after each `unavailable` until it is acked."""
    async with asyncio.timeout(timeout):
        while True:
            answer = await peer.request(frame_type, **fields)
            if answer["type"] == "ack":
                return answer
            assert answer["code"] == "unavailable", answer
            await asyncio.sleep(0.05)


def delivered(peer: JsonPeer) -> list[str]:
    return [f["offset"] for f in peer.frames if f["type"] == "message"]


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start again."""
    if REDIS_SERVER is None:
        pytest.skip("needs a real redis-server (CI installs one)")
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def node_on(aiohttp_client: Any) -> Callable[..., Awaitable[TestClient]]:
    """Start a node whose Redis is at `url` (a server, or a proxy in front of one)."""

    async def start(url: str, node_id: str, **overrides: Any) -> TestClient:
        settings = replace(TEST_SETTINGS, node_id=node_id, redis_url=url, **overrides)
        client: TestClient = await aiohttp_client(create_app(settings))
        return client

    return start
