"""Stopping background tasks: cancel, wait (bounded), and never swallow our own cancel;
and the opposite, cleanups that a cancel must not cut short."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

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


async def complete_despite_cancel(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run `cleanup` to its end even if the caller is cancelled meanwhile (a connection's
    handler is, when its peer goes away), then pass the cancel on.

    A cleanup cut in the middle leaves state behind: rooms a closed connection is still
    counted in, a name never released.
    """
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()
