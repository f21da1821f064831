"""Scripts sent together: every Lua call of a node on one Redis goes out in a pipeline.

Each new connection runs one script (the claim and its first room's entry), each closed
one a few (its presence, its name), and each message one (the publish). Sent one by one,
redis-py's per-command path (a pooled connection taken and given back, a retry wrapper,
one socket write per command, which on a shared core also wakes Redis once per command)
was the largest single cost of a burst of handshakes. A `ScriptBatch` gathers the
scripts called within one turn of the event loop, and those called while the previous
batches wait for their replies, into the next pipeline: at low load a script goes out
one turn later, alone; under load the batches grow with Redis's answer time. Up to
LANES batches are in flight at once, each on its own pooled connection.

Every caller still gets its own script's reply or error (a script's error, such as
NOSCRIPT, is its own; a connection error is the whole batch's); a batch runs in the
order called. Batches in different lanes may run in either order, as commands on
different pooled connections always could: a caller that needs one script run before
another awaits the first (a connection's messages are published one at a time).
Scripts are never blocking, so none holds the others up. Only one Redis: a Redis
Cluster's scripts go to their shards one by one (`cluster.connect_cluster`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

SCRIPT_COMMANDS = frozenset({"EVALSHA", "EVAL"})
CLOSED = "the Redis client is closed"
MOST_TOGETHER = 256  # scripts in one pipeline at most; the rest go in the next
# Batches in flight at once, each on its own pooled connection. One lane gathered the
# most (S3 0.85x CPU per connection, S4 1.30x messages/s) but cost S1, one busy room,
# 0.83x deliveries/s; four kept S1 (1.05x) with S3 0.92x and S4 1.13x (issue 25's note).
LANES = 4

Command = tuple[Any, ...]
Send = Callable[[list[Command]], Awaitable[Sequence[Any]]]


class ScriptBatch:
    """The commands waiting for the next pipeline, and the lanes (tasks) that send them:
    a lane sends one batch at a time, and a new one starts (up to LANES) when a command
    is called and no lane is about to take the queue."""

    def __init__(self, send: Send, name: str) -> None:
        # `send` runs one batch: each command's reply, or its error in its place; it
        # raises only what fails the whole batch (the connection).
        self._send = send
        self._name = name
        self._queued: list[tuple[Command, asyncio.Future[Any]]] = []
        self._lanes: set[asyncio.Task[None]] = set()  # each sends one batch at a time
        self._gathering = False  # a lane has started and not yet taken its first batch

    async def run(self, command: Command) -> Any:
        """`command`'s reply, sent with the next batch."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((command, future))
        if not self._gathering and len(self._lanes) < LANES:
            self._gathering = True
            self._lanes.add(asyncio.create_task(self._lane(), name=self._name))
        return await future

    async def close(self) -> None:
        """Stop sending: the callers of a batch on its way, and of those waiting, get a
        Redis connection error (as a closed client's commands would). A script called
        afterwards starts a lane again (redis-py's client reconnects after a close)."""
        while self._lanes:  # a lane started meanwhile is stopped too
            lanes = list(self._lanes)
            await stop_tasks(*lanes)
            self._lanes.difference_update(lanes)  # one cancelled before its first step
        self._gathering = False
        queued, self._queued = self._queued, []
        _fail(queued, RedisConnectionError(CLOSED))

    async def _lane(self) -> None:
        self._gathering = False
        try:
            while self._queued:
                # One turn of the loop (the task's first step comes after the callers'
                # of this turn), or a whole batch's answer time, gathers the batch.
                batch = self._queued[:MOST_TOGETHER]
                del self._queued[:MOST_TOGETHER]
                batch = [(command, future) for command, future in batch if not future.done()]
                if batch:  # a caller cancelled before its script went out: not sent
                    await self._answer(batch)
        finally:  # at once: a script called from now on starts a lane of its own
            self._lanes.discard(asyncio.current_task())

    async def _answer(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._send([command for command, _ in batch])
        except asyncio.CancelledError:  # closed (only `close` cancels this task)
            _fail(batch, RedisConnectionError(CLOSED))
            raise
        except Exception as error:  # the connection failed: every one of them
            _fail(batch, error)
            return
        try:
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue  # its caller gave up; the script ran all the same
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except Exception as error:  # a bug (replies not one per script): say so, free them
            log.error("%s: a batch's replies could not be handed out", self._name, exc_info=True)
            _fail(batch, RedisConnectionError(f"{CLOSED}: {error}"))


def _fail(waiting: list[tuple[Command, asyncio.Future[Any]]], error: Exception) -> None:
    for _, future in waiting:
        if not future.done():
            future.set_exception(error)


class ScriptBatchingRedis(Redis):
    """A client of one Redis whose Lua scripts (EVALSHA, EVAL) go out in batches
    (`ScriptBatch`); every other command is sent as redis-py sends it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scripts = ScriptBatch(self._pipelined, "redis scripts")

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run a command; a script without options waits for the next batch."""
        if args and args[0] in SCRIPT_COMMANDS and not options:
            return await self._scripts.run(args)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Stop the batches, then close as redis-py does."""
        await self._scripts.close()
        await super().aclose(close_connection_pool)

    async def _pipelined(self, commands: list[Command]) -> Sequence[Any]:
        async with self.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: Sequence[Any] = await pipe.execute(raise_on_error=False)
            return replies
