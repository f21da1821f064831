"""Shutdown: every connection is told the node is going away (1001), named or not."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from tests.conftest import WAIT, TextPeer, join_json


async def test_shutdown_closes_every_connection_with_1001(client: TestClient) -> None:
    """Guards against clients left hanging (or told 'normal close') when a node stops.

    A text client still being asked its name counts too.
    """
    named = await join_json(client, "alice")
    unnamed = TextPeer(await client.ws_connect("/ws"))
    assert await unnamed.recv() == "Your name:"
    shutting_down = asyncio.create_task(client.app.shutdown())
    assert await named.close_code() == 1001
    assert await unnamed.close_code() == 1001
    async with asyncio.timeout(WAIT):
        await shutting_down
