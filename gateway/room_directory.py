"""The list of rooms (`rooms`, text mode's /rooms, `GET /api/rooms`), kept by the node.

Listing every room costs the broker a sweep (on Redis a SCAN of the keyspace and a
SCARD per room it finds), so a node sweeps at most once every `--rooms-refresh`
seconds, for all its requests together (one sweep at a time; the requests that arrive
meanwhile wait for it), and answers from what it kept in between: a client asking many
times a second costs a lookup in memory. The joins and leaves of this node's own users
(a name's first entry into a room, its last leave) change the kept list at once; those
made through other nodes show within `--rooms-refresh`, and a kick through this node
makes the next listing sweep. An answer lists at most
`--max-rooms-listed` rooms, the busiest (then by name), sorted by name, and says how
many rooms there are in all (`total`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.access import Rooms
from gateway.broker.base import Broker


@dataclass(frozen=True, slots=True)
class RoomListing:
    """What a listing answers: the rooms shown with their member counts, by name, and
    how many rooms the caller may see in all (`total` >= len(rooms))."""

    rooms: list[tuple[str, int]]
    total: int


class RoomDirectory:
    """The node's kept list of rooms with anyone present, and their member counts."""

    def __init__(
        self,
        broker: Broker,
        refresh: float,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broker = broker
        self._refresh = refresh
        self._limit = limit
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._swept_at = -math.inf  # when the last sweep began
        self._ranked: list[tuple[str, int]] | None = None  # busiest first; None: redo
        self._sweeping = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._clock() - self._swept_at < self._refresh

    async def listing(self, readable: Rooms) -> RoomListing:
        """The rooms `readable` lets the caller see. Raises BrokerUnavailable when a
        sweep is due and the broker cannot make it."""
        if not self._fresh():
            async with self._sweeping:
                if not self._fresh():  # nobody swept while this one waited
                    started = self._clock()
                    self._counts = dict(await self._broker.rooms())
                    self._swept_at = started
                    self._ranked = None
        if self._ranked is None:
            self._ranked = sorted(self._counts.items(), key=lambda rc: (-rc[1], rc[0]))
        if readable.patterns is None:
            shown, total = self._ranked[: self._limit], len(self._ranked)
        else:
            visible = [rc for rc in self._ranked if readable.allows(rc[0])]
            shown, total = visible[: self._limit], len(visible)
        return RoomListing(sorted(shown), total)

    def invalidate(self) -> None:
        """The kept list is wrong in a way this node cannot tell (a moderator's kick took
        a name out of a room for every node): the next listing sweeps."""
        self._swept_at = -math.inf

    def note(self, room: str, change: int) -> None:
        """A name became present in `room` everywhere (+1) or absent everywhere (-1),
        through this node: the kept list follows at once."""
        count = self._counts.get(room, 0) + change
        if count > 0:
            self._counts[room] = count
        else:
            self._counts.pop(room, None)
        self._ranked = None
