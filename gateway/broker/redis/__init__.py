"""The Redis broker as a package: many nodes, one chat, on one Redis or a Redis Cluster.

`RedisBroker` (broker.py) builds the parts and hands each one `RedisContext`
(context.py), whose client is typed by the commands the parts send (client.py). The
parts: publishing and entering rooms (rooms.py), history and resume (history.py),
presence (presence.py), names and direct messages (names.py), bans and deletes
(moderation.py), the console's reads (console.py), heartbeats and upkeep (liveness.py,
reregister.py, reaper.py, former_run.py), replica waits (replicas.py), events stored for
the application (event_log.py, event_scripts.py). The node's subscription is connect.py
(one Redis) or cluster.py (one per shard), driven by the state machine in
subscription.py and carried out by subscriber.py, with its SUBSCRIBE acks awaited in
subscribe_acks.py, gathered in subscribe_batch.py and each command spelt for one Redis
or a shard in pubsub_commands.py; what arrives on it is live.py and events.py. The key
layout is keys.py, every Lua script a file in scripts/ (loaded by scripts/__init__.py),
the channel message kinds kinds.py, the errors every part catches errors.py.
"""

from __future__ import annotations

from gateway.broker.redis.broker import RedisBroker
from gateway.broker.redis.connect import connect

__all__ = ["RedisBroker", "connect"]
