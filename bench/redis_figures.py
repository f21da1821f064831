"""Measure the Redis cost of chat-gateway: round trips per message sent, and memory
per 1,000 history messages. Starts its own redis-server on a free port.

    .venv/bin/python -m bench.redis_figures
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.broker.redis_scripts import Keys
from gateway.config import Settings
from tooling.redis import RedisServer

MESSAGES = 1000
ROUND_TRIP_SAMPLE = 200


async def send_all(ws: aiohttp.ClientWebSocketResponse, text: str, count: int) -> None:
    for i in range(count):
        await ws.send_str(json.dumps({"type": "send", "room": "bench", "text": f"{text}{i}"}))
        while True:
            frame = json.loads(await ws.receive_str(timeout=10))
            if frame["type"] == "ack":
                break


def count_round_trips(monitor: Any) -> int:
    """Commands the node sent (MONITOR lines not run by a Lua script), until our PING."""
    count = 0
    for command in monitor.listen():
        if command["client_type"] == "lua":
            continue
        if command["command"] == "PING":
            return count
        count += 1
    return count


async def main() -> None:
    server = RedisServer().start()
    redis = server.client()
    try:
        settings = replace(
            Settings(), node_id="bench", redis_url=server.url, rate_per_second=0,
            probe_interval=3600.0, presence_timeout=3600.0, heartbeat=0,
        )  # fmt: skip
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        ws = await client.ws_connect(
            "/ws", params={"name": "bench", "room": "bench"}, protocols=("chat.v1.json",)
        )
        await send_all(ws, "warm-up ", 10)  # loads the scripts, creates the room
        for size in (40, 200):
            text = "x" * (size - 4)
            redis.delete(Keys("chat:").log("bench"))
            memory_before = redis.info("memory")["used_memory"]
            await send_all(ws, text, MESSAGES)
            memory = redis.info("memory")["used_memory"] - memory_before
            with redis.monitor() as monitor:  # a separate pass: MONITOR's buffer uses memory
                counting = asyncio.create_task(asyncio.to_thread(count_round_trips, monitor))
                await send_all(ws, text, ROUND_TRIP_SAMPLE)
                redis.ping()  # the marker that ends the count
                commands = await counting
            print(
                f"{size}-character messages: {commands / ROUND_TRIP_SAMPLE:.2f} Redis round "
                f"trips per message sent; {memory / 1024:.0f} KiB of Redis memory per "
                f"{MESSAGES} history messages"
            )
        await ws.close()
        await client.close()
    finally:
        redis.close()
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
