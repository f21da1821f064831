"""Stopping background tasks: cancel, wait (bounded), and never swallow our own cancel."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0  # seconds to wait for cancelled tasks before giving up on them


async def stop_tasks(*tasks: asyncio.Task[object] | None) -> None:
    """Cancel `tasks` and wait until they are done, cancelling again any that swallowed
    the cancellation; a task still running after STOP_TIMEOUT is logged and left."""
    pending = {task for task in tasks if task is not None and not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_TIMEOUT
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in pending:
        log.error("task %s did not stop when cancelled", task.get_name())
