"""Acked means replicated: a write the gateway acks has reached the replicas it waits for.

Redis replicates asynchronously: a primary answers a write before any replica has it,
and a primary that dies a moment later takes that write with it when its replica
takes over. `WAIT numreplicas timeout` blocks the connection that wrote until that many
replicas have acknowledged everything the connection wrote before it, so the publish
script and its WAIT go out together on one connection (a pipeline; on a Redis Cluster a
pipeline to the primary that owns the room's slot). A WAIT on any other connection
would wait for nothing.

How many replicas to wait for is `--redis-ack-replicas`: a number, or `auto` (the
default), which waits for one whenever the primary that takes the write has a replica,
and for none when it has none (a single Redis, or a promoted replica whose old primary
has not come back yet). With a fixed number, a write that does not reach that many
replicas within `--redis-ack-timeout` is refused as unavailable: the sender gets no
`ack` and may send again (the message id makes the retry count once).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import PipelineCommand
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError

from gateway.broker.redis.client import as_cluster
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.lua import Lua
from gateway.errors import NotReplicated

AUTO = -1  # --redis-ack-replicas auto
RECHECK_SECONDS = 10.0  # how long a replica count is trusted (auto)


class ReplicaWaits:
    """Runs a write script and, when replicas are to be waited for, its WAIT."""

    def __init__(self, context: RedisContext, wanted: int, timeout: float) -> None:
        self._redis = context.redis
        self._wanted = wanted
        self._timeout_ms = max(1, int(timeout * 1000))
        self._sharded = context.sharded
        # auto: each primary's ("host:port"; "" on a single Redis) online replicas, and
        # when they were counted
        self._replicas: dict[str, tuple[float, int]] = {}

    async def run(self, lua: Lua, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's result once the write has reached the replicas it must reach;
        NotReplicated when it did not (the write happened on the primary)."""
        wanted = await self._wanted_for(keys[0])
        if wanted == 0:
            return await lua(keys=keys, args=args)
        result, reached = await self._run_and_wait(lua, keys, args, wanted)
        if reached < wanted:
            raise NotReplicated(
                f"not acknowledged: {reached} of {wanted} replicas confirmed it "
                f"within {self._timeout_ms} ms"
            )
        return result

    async def _wanted_for(self, key: Any) -> int:
        if self._wanted != AUTO:
            return self._wanted
        node = as_cluster(self._redis).get_node_from_key(key) if self._sharded else None
        name = "" if node is None else node.name
        now = time.monotonic()
        seen_at, online = self._replicas.get(name, (float("-inf"), 0))
        if now - seen_at > RECHECK_SECONDS:
            # The primary's own view: a replica is known to it the moment it connects
            # (CLUSTER SLOTS hides one that has had no write yet, and gossip lags).
            target = {} if node is None else {"target_nodes": node}
            try:
                info = await self._redis.execute_command("INFO", "replication", **target)
            except ResponseError:  # a Redis look-alike without INFO has no replicas
                info = {}
            online = _online_replicas(info)
            self._replicas[name] = (now, online)
        return 1 if online else 0

    async def _run_and_wait(
        self, lua: Lua, keys: Sequence[Any], args: Sequence[Any], wanted: int
    ) -> tuple[Any, int]:
        for command in lua.commands(keys, args):
            replies = await self._pipeline(keys[0], [command, ("WAIT", wanted, self._timeout_ms)])
            result, reached = replies
            if isinstance(result, NoScriptError):
                continue  # not cached there yet: the next command sends the whole script
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return result, int(reached)
        raise AssertionError("EVAL always runs")  # pragma: no cover

    async def _pipeline(self, key: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies (exceptions in place) of `commands` sent on one connection."""
        if not self._sharded:
            async with self._redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=False))
        node = as_cluster(self._redis).get_node_from_key(key)
        assert node is not None  # None only for a replica: a slot not covered raises
        sent = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
        await node.execute_pipeline(sent)
        replies = [command.result for command in sent]
        moved = next((r for r in replies if isinstance(r, (MovedError, AskError))), None)
        if moved is not None:
            # The slot lives elsewhere now: learn where, and let the sender try again
            # (a dead primary is learnt of by the client's other commands).
            await as_cluster(self._redis).nodes_manager.move_slot(moved)
        return replies


def _online_replicas(info: Any) -> int:
    """Replicas `online` (synced, taking the stream) in an INFO replication reply;
    one still loading its first copy could not acknowledge anything yet."""
    if isinstance(info, bytes | str):
        text = info.decode() if isinstance(info, bytes) else info
        return sum(
            1 for line in text.splitlines() if line.startswith("slave") and "state=online" in line
        )
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
