"""SUBSCRIBEs gathered: many channels asked for together go out in one command.

Every new connection subscribes its name's user channel before it claims the name (so
no kick or direct message is missed). One SUBSCRIBE per connection made redis-py's
per-command cost a share of each connection's; a `SubscribeBatch` gathers the channels
asked for within one turn of the event loop, and those asked for while the previous
batch waits for its confirmations, into the next command. Each caller still waits for
its own channel's confirmation (the subscriber's futures), so a welcome still follows
a confirmed subscription; nothing here decides what to subscribe (the state machine
does) or touches Redis (the `send` given does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)


class SubscribeBatch:
    """The channels waiting for the next SUBSCRIBE, and the one task that sends them."""

    def __init__(self, send: Callable[[list[str]], Awaitable[None]], name: str) -> None:
        # `send` subscribes one batch and returns once Redis confirmed it (or it failed,
        # which `send` reports itself: it never raises Redis's errors).
        self._send = send
        self._name = name
        self._queued: dict[str, None] = {}  # channels in the order asked for
        self._task: asyncio.Task[None] | None = None

    def add(self, channel: str) -> None:
        """Subscribe `channel` with the next batch (a task of ours sends it soon)."""
        self._queued[channel] = None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
            self._task.add_done_callback(self._crashed)

    def discard(self, channel: str) -> bool:
        """Take `channel` out of the next batch; whether it was waiting there (then no
        SUBSCRIBE of it was sent: no UNSUBSCRIBE is due either)."""
        if channel not in self._queued:
            return False
        del self._queued[channel]
        return True

    def clear(self) -> None:
        """Forget what waits: the connection is gone, and the next one subscribes every
        wanted channel by itself."""
        self._queued.clear()

    async def close(self) -> None:
        """Stop sending; what waits is dropped."""
        self._queued.clear()
        await stop_tasks(self._task)

    async def _run(self) -> None:
        try:
            while self._queued:
                # One turn of the loop (the task's first step comes after the callers'
                # of this turn), or a whole confirmation's wait, gathers the batch.
                batch = list(self._queued)
                self._queued.clear()
                await self._send(batch)
        finally:
            self._task = None

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s crashed: a bug", task.get_name(), exc_info=task.exception())
