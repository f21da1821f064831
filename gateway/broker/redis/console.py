"""What the operator's console reads on Redis: the nodes' statuses, where a user is,
how many messages rooms have had, and the recent moderation actions.

Each node's heartbeat writes its status beside its heartbeat key (`P node:{N}:status`,
JSON, expiring with it: `liveness`). A user is found from its name hash (which
connections on which nodes hold it) and, for the rooms, from the room index of each of
those nodes and the rooms' holder sets. The audit is one capped list (`P audit`). Every
read here is a few pipelined commands; on a Redis Cluster the pipeline sends each
command to its own slot's shard.
"""

from __future__ import annotations

import orjson

from gateway.broker.base import AUDIT_KEPT, AuditEntry, NodeStatus, UserPlaces
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import unavailable_on_error
from gateway.names import name_key


class Console:
    """The console's reads and the audit list, on one Redis or a cluster."""

    def __init__(self, context: RedisContext) -> None:
        self._redis = context.redis
        self._keys = context.keys

    async def nodes(self) -> list[NodeStatus]:
        """The status of every listed node whose status has not expired."""
        with unavailable_on_error():
            listed = sorted(n.decode() for n in await self._redis.smembers(self._keys.nodes))
            if not listed:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in listed:
                    pipe.get(self._keys.node(node) + ":status")
                found = await pipe.execute()
        return [orjson.loads(raw) for raw in found if raw is not None]

    async def user(self, name: str) -> UserPlaces:
        """Where `name` is online: its name hash, then the rooms its nodes hold it in."""
        key = name_key(name)
        with unavailable_on_error():
            held = {k.decode(): v.decode() for k, v in
                    (await self._redis.hgetall(self._keys.name(key))).items()}  # fmt: skip
            if held.get("key") != key:
                return UserPlaces(name, [], [])  # offline, or a look-alike holds it
            if "shared" in held:
                connections = [(f[2:], node) for f, node in held.items() if f.startswith("c:")]
            else:
                connections = [(held["conn"], held["node"])] if "conn" in held else []
            nodes = sorted({node for _, node in connections})
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in nodes:
                    pipe.smembers(self._keys.node(node) + ":rooms")
                indexes = await pipe.execute()
            candidates = [(n, r.decode()) for n, rooms in zip(nodes, indexes, strict=True)
                          for r in rooms]  # fmt: skip
            async with self._redis.pipeline(transaction=False) as pipe:
                for node, room in candidates:
                    pipe.sismember(self._keys.room(room) + "holders", f"{node}\n{key}")
                holding = await pipe.execute()
        rooms = sorted({room for (_, room), yes in zip(candidates, holding, strict=True) if yes})
        return UserPlaces(held.get("display", name), sorted(connections), rooms)

    async def room_counts(self, rooms: list[str]) -> list[int]:
        """Each room's newest sequence number (0 for a room without messages)."""
        if not rooms:
            return []
        with unavailable_on_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.hget(self._keys.meta(room), "seq")
                found = await pipe.execute()
        return [int(seq) if seq is not None else 0 for seq in found]

    async def note_audit(self, entry: AuditEntry) -> None:
        """Push `entry` on the audit list, trimmed to the newest AUDIT_KEPT."""
        with unavailable_on_error():
            async with self._redis.pipeline(transaction=False) as pipe:  # one key, one slot
                pipe.lpush(self._keys.audit, orjson.dumps(entry))
                pipe.ltrim(self._keys.audit, 0, AUDIT_KEPT - 1)
                await pipe.execute()

    async def audit(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
        with unavailable_on_error():
            found = await self._redis.lrange(self._keys.audit, 0, limit - 1)
        return [orjson.loads(raw) for raw in found]
