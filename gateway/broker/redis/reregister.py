"""Putting a node's presence and names back on Redis, after Redis lost them or the
node was reaped while it stalled: its index first, then its entries and its names.
Liveness calls it when a beat finds the node's entries lost; the live path after each
new subscription (`live`), for the rooms and names of that subscription.
"""

from __future__ import annotations

import logging

from gateway.broker.redis.errors import unavailable_on_error
from gateway.broker.redis.keys import Keys
from gateway.broker.redis.names import Names
from gateway.broker.redis.presence import RedisPresence
from gateway.errors import BrokerUnavailable

log = logging.getLogger(__name__)


async def reregister(
    keys: Keys,
    presence: RedisPresence,
    names: Names,
    announce: bool = False,
    channels: frozenset[str] | None = None,
) -> bool:
    """Put this node's presence and names back; whether all of it went back (what did
    not is left for the next call).

    With `announce` (we were reaped, and the others were told we left) each name put
    back in a room is announced as a join. A name someone else took meanwhile is not
    taken back: its connection here is closed as taken over. Cleanups that failed
    earlier are retried. With `channels`, only the rooms and names whose channels these
    are (one shard's, on a cluster); the index of all is rebuilt.
    """

    def mine(room: str) -> bool:
        return channels is None or keys.room_channel(room) in channels

    try:
        await presence.reindex()
        with unavailable_on_error():
            await names.reindex()
        complete = True
    except BrokerUnavailable as exc:
        log.warning("could not rebuild this node's index (%s); retrying later", exc)
        complete = False
    complete = await presence.restore(announce, mine) and complete
    return await names.reclaim_all(channels) and complete
