"""The nemesis: every few seconds one fault, picked at random, applied, held, healed.

Faults one at a time, each healed before the next, so a violation's neighbourhood in
the history names the fault that caused it:

| fault | what it does |
|---|---|
| kill | SIGKILL a node; start it again 1 to 5 s later |
| term | SIGTERM a node (it drains: 1001 to every client); start it again once it exited |
| pause | SIGSTOP a node for 1 to `max_pause` s, then SIGCONT |
| pubsub | CLIENT KILL TYPE pubsub on every Redis server (the nodes' subscriptions drop) |
| redis-restart | SIGTERM a redis-server (its append-only file keeps the data); start it again |
| blackhole | a node's Redis traffic held in both directions for 2 to 8 s (one Redis only) |
| primary-kill | SIGKILL a Redis Cluster primary; its replica takes over; start it again 8 s later |
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable

from bench.chaos.history import History
from bench.chaos.system import System

SINGLE_FAULTS = ("kill", "term", "pause", "pubsub", "redis-restart", "blackhole")
CLUSTER_FAULTS = ("kill", "term", "pause", "pubsub", "redis-restart", "primary-kill")
GAP = (2.0, 5.0)  # seconds between one fault healed and the next


def faults_for(kind: str) -> tuple[str, ...]:
    """The faults that make sense on `kind` (single or cluster) Redis."""
    return SINGLE_FAULTS if kind == "single" else CLUSTER_FAULTS


class Nemesis:
    """Injects faults into `system`, recording each in `history`."""

    def __init__(
        self,
        system: System,
        history: History,
        rng: random.Random,
        faults: tuple[str, ...],
        *,
        max_pause: float = 20.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self._system, self._history, self._rng = system, history, rng
        self._faults, self._max_pause, self._say = faults, max_pause, say
        self._actions = {
            "kill": self._kill,
            "term": self._term,
            "pause": self._pause,
            "pubsub": self._pubsub,
            "redis-restart": self._redis_restart,
            "blackhole": self._blackhole,
            "primary-kill": self._primary_kill,
        }

    async def run(self, seconds: float) -> None:
        """Inject faults for `seconds` (the one under way at the end is healed first)."""
        until = self._history.now() + seconds
        while self._history.now() < until:
            await asyncio.sleep(self._rng.uniform(*GAP))
            if self._history.now() >= until or not self._faults:
                break
            kind = self._rng.choice(self._faults)
            await self._actions[kind]()

    def _node(self) -> int:
        return self._rng.randrange(len(self._system.nodes))

    def _begin(self, kind: str, target: str) -> None:
        fault = self._history.fault(kind, target)
        self._say(f"chaos: t={fault.start:6.1f}s {kind} {target}")

    def _end(self) -> None:
        self._history.faults[-1].end = self._history.now()

    async def _kill(self) -> None:
        index = self._node()
        self._begin("kill", self._system.node_name(index))
        self._system.signal_node(index, signal.SIGKILL)
        await self._system.wait_node_exit(index)
        await asyncio.sleep(self._rng.uniform(1.0, 5.0))
        await self._system.restart_node(index)
        self._end()

    async def _term(self) -> None:
        index = self._node()
        self._begin("term", self._system.node_name(index))
        self._system.signal_node(index, signal.SIGTERM)
        await self._system.wait_node_exit(index)
        await self._system.restart_node(index)
        self._end()

    async def _pause(self) -> None:
        index = self._node()
        seconds = self._rng.uniform(1.0, self._max_pause)
        self._begin("pause", f"{self._system.node_name(index)} {seconds:.1f}s")
        self._system.signal_node(index, signal.SIGSTOP)
        await asyncio.sleep(seconds)
        self._system.signal_node(index, signal.SIGCONT)
        self._end()

    async def _pubsub(self) -> None:
        self._begin("pubsub", "every redis-server")
        await asyncio.to_thread(self._system.kill_pubsub)
        self._end()

    async def _redis_restart(self) -> None:
        index = self._rng.randrange(len(self._system.redis.processes))
        self._begin("redis-restart", self._system.redis_name(index))
        await asyncio.to_thread(self._system.stop_redis, index, signal.SIGTERM)
        await self._system.start_redis(index)
        self._end()

    async def _blackhole(self) -> None:
        index = self._node()
        seconds = self._rng.uniform(2.0, 8.0)
        self._begin("blackhole", f"{self._system.node_name(index)} {seconds:.1f}s")
        self._system.proxies[index].blackhole()
        await asyncio.sleep(seconds)
        self._system.proxies[index].heal()
        self._end()

    async def _primary_kill(self) -> None:
        primaries = await asyncio.to_thread(self._system.primaries)
        if not primaries:
            return
        index = self._rng.choice(primaries)
        self._begin("primary-kill", self._system.redis_name(index))
        await asyncio.to_thread(self._system.stop_redis, index, signal.SIGKILL)
        await asyncio.sleep(8.0)  # past cluster-node-timeout: the replica takes over
        await self._system.start_redis(index)
        self._end()
