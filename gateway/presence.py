"""Presence on top of the broker: join on a name's first connection, leave after its last.

A name whose last local connection left a room stays present for the grace period;
a connection of the same name entering again within it produces neither event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from gateway.broker.base import Banned, Broker, NameTaken, Replay
from gateway.errors import BrokerUnavailable
from gateway.names import name_key
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

View = tuple[Replay, list[str]]  # what a connection entering a room is sent (replay, members)


class Presence:
    """Counts this node's connections per (room, name) and tells the broker the edges."""

    def __init__(
        self,
        broker: Broker,
        grace_period: float,
        on_change: Callable[[str, int], None] = lambda room, change: None,
    ) -> None:
        self._broker = broker
        self._on_change = on_change  # a name present everywhere (+1) or gone (-1)
        self._grace = grace_period
        self._local: Counter[tuple[str, str]] = Counter()  # (room, name key) -> connections
        # Leaves in their grace period: the task, and the loop time it goes out.
        self._leaving: dict[tuple[str, str], tuple[asyncio.Task[None], float]] = {}
        self._cancelled: set[asyncio.Task[None]] = set()  # cancelled leaves not yet finished
        self._committed: set[tuple[str, str]] = set()  # leaves past their grace period

    async def enter(
        self,
        room: str,
        name: str,
        reading: tuple[str | None, int] | None = None,
        through: Callable[[], Awaitable[tuple[bool, View]]] | None = None,
    ) -> tuple[bool, View | None]:
        """A connection of `name` entered `room`: whether that was announced as a join
        (the name was present nowhere), and with `reading` (since, limit) what
        `Broker.entering` reads, when the broker was asked (then in the same step; else
        None: the caller reads it). Raises Banned while it is banned there. `through`:
        the broker's step that makes the entry and reads what it is sent, instead of
        `presence_add_entering` (a new connection's claim with it); not called when the
        broker is not asked. A NameTaken it raises undoes the entry, as a ban does."""
        key = (room, name_key(name))
        self._local[key] += 1
        if self._local[key] > 1:
            return False, None
        pending = self._leaving.pop(key, None)
        due: float | None = None  # the loop time a leave cancelled here was to go
        if pending is not None:
            leaving, leaves_at = pending
            if key not in self._committed:
                due = leaves_at
                self._cancel(leaving)  # back within the grace period: no leave
                # The broker is still asked: it adds nothing (and announces nothing)
                # while this node's entry is there, but refuses a ban set since, and
                # puts back (with a join) an entry a moderator's kick took out.
            else:
                # The grace period is over and the leave is on its way: let it finish,
                # then this is a new arrival.
                with contextlib.suppress(BrokerUnavailable):
                    await asyncio.shield(leaving)
                if key not in self._leaving:  # (no leave of it started meanwhile)
                    self._committed.discard(key)  # popped: the leave did not clean up
        view: View | None = None
        try:
            if through is not None:
                added, view = await through()
            elif reading is None:
                added = await self._broker.presence_add(room, name, announce=True)
            else:
                since, limit = reading
                added, replay, members = await self._broker.presence_add_entering(
                    room, name, since, limit
                )
                view = (replay, members)
        except Banned:
            self.exit(room, name, at_once=True)  # nothing was added: what is left goes
            raise
        except NameTaken:
            # Nothing was added; a leave this entry cancelled keeps the rest of its
            # grace period (the name's last connection here left a moment ago).
            within = None if due is None else due - asyncio.get_running_loop().time()
            self.exit(room, name, at_once=due is None, within=within)
            raise
        except BrokerUnavailable:
            self.exit(room, name)  # whatever was stored is removed like any leave
            raise
        if added:
            self._on_change(room, 1)
        return bool(added), view

    def exit(
        self, room: str, name: str, *, at_once: bool = False, within: float | None = None
    ) -> None:
        """A connection of `name` left `room`; the last one starts the grace period
        (with `at_once`, none: a moderator removed it; `within`: what is left of one)."""
        key = (room, name_key(name))
        if self._local[key] <= 0:
            return
        self._drop(key)
        if key not in self._local and key not in self._leaving:
            delay = 0.0 if at_once else max(0.0, self._grace if within is None else within)
            self._leave(key, room, name, delay)
            if at_once:
                self._committed.add(key)  # a return waits for it, then is a join

    def expel(self, room: str, name: str) -> None:
        """A moderator removed `name` from `room`: a leave in its grace period (the name
        left here a moment ago) goes out now."""
        key = (room, name_key(name))
        pending = self._leaving.get(key)
        if pending is None or key in self._committed or self._local[key]:
            return
        self._cancel(pending[0])
        self._leave(key, room, name, 0.0)
        self._committed.add(key)

    def _leave(self, key: tuple[str, str], room: str, name: str, delay: float) -> None:
        """Start `name`'s leave of `room`, to go out in `delay` seconds."""
        task = asyncio.create_task(self._leave_later(key, room, name, delay), name=f"leave-{room}")
        self._leaving[key] = (task, asyncio.get_running_loop().time() + delay)

    def _cancel(self, leaving: asyncio.Task[None]) -> None:
        """Call off a pending leave (`close` still waits for it to end)."""
        leaving.cancel()
        self._cancelled.add(leaving)
        leaving.add_done_callback(self._cancelled.discard)

    def _drop(self, key: tuple[str, str]) -> None:
        self._local[key] -= 1
        if self._local[key] <= 0:
            del self._local[key]

    async def _leave_later(self, key: tuple[str, str], room: str, name: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._committed.add(key)
            if await self._broker.presence_remove(room, name, announce=True):
                self._on_change(room, -1)
        except BrokerUnavailable:
            log.warning("%s left %s while the broker was unavailable; retried later", name, room)
        finally:
            pending = self._leaving.get(key)
            if pending is not None and pending[0] is asyncio.current_task():
                del self._leaving[key]
                self._committed.discard(key)

    async def close(self) -> None:
        """Cancel every pending leave and wait for them."""
        tasks = [*(task for task, _ in self._leaving.values()), *self._cancelled]
        self._leaving.clear()
        await stop_tasks(*tasks)
