"""What clients sent to a real redis-server while a step ran, as MONITOR saw it.

The commands scripts ran themselves (MONITOR's `lua` client) are left out: a test counts
the node's round trips, or which connection a command came on, not what its scripts do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio

END = "monitored-step-over"  # echoed after the step: every command before it was seen
SEEN_WITHIN = 5.0  # seconds for MONITOR to show what was sent before the echo
Step = Callable[[], Awaitable[Any]]


async def monitored(
    url: str, step: Callable[[], Awaitable[Any]]
) -> tuple[Any, list[dict[str, Any]]]:
    """Run `step`; its result, and MONITOR's entry (`command`, `client_address`,
    `client_port`, ...) for each command clients sent meanwhile, in order."""
    watcher = redis.asyncio.Redis.from_url(url)
    seen: list[dict[str, Any]] = []
    try:
        async with watcher.monitor() as monitor:
            await watcher.ping()  # the MONITOR is on: what follows is seen
            result = await step()
            await watcher.echo(END)
            async with asyncio.timeout(SEEN_WITHIN):
                while True:
                    entry = await monitor.next_command()
                    if entry["command"].split(" ")[:2] == ["ECHO", END]:
                        return result, seen
                    if entry["client_type"] != "lua":
                        seen.append(entry)
    finally:
        await watcher.aclose()
