"""The nemesis: every few seconds one fault, picked at random, applied, held, healed.

Faults overlap, as in a real outage (a node paused while Redis restarts while another
node drains), but never two on one node, nor two Redis restarts or failovers at once;
`overlap=False` heals each before the next. Each is in the history with its times, so a
violation's neighbourhood names the faults that caused it:

| fault | what it does |
|---|---|
| kill | SIGKILL a node; start it again 1 to 5 s later |
| term | SIGTERM a node (it drains: 1001 to every client); start it again once it exited |
| pause | SIGSTOP a node for 1 to `max_pause` s, then SIGCONT |
| pubsub | CLIENT KILL TYPE pubsub on every Redis server (the nodes' subscriptions drop) |
| redis-restart | SIGTERM or SIGKILL a redis-server (AOF, fsync always); start it again |
| blackhole | a node's Redis traffic held in both directions for 2 to 8 s (one Redis only) |
| primary-kill | SIGKILL a Redis Cluster primary (with a replica in sync); start it again |
| app | for 2 to 8 s the application answers 503, or each batch past the timeout |

A killed primary comes back 1 to 8 s after its kill, as a supervisor would restart it,
racing the failover (cluster-node-timeout is 5 s), or 2 to 6 s after its replica took
over: each half the time; always the latter with `failover_first`.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable

from bench.chaos.application import Application
from bench.chaos.history import Fault, History
from bench.chaos.system import System

SINGLE_FAULTS = ("kill", "term", "pause", "pubsub", "redis-restart", "blackhole", "app")
CLUSTER_FAULTS = ("kill", "term", "pause", "pubsub", "redis-restart", "primary-kill", "app")
GAP = (2.0, 5.0)  # seconds between the start of one fault and the next
REJOIN_AFTER = (2.0, 6.0)  # seconds after a failover before the old primary is back
RACING_REJOIN = (1.0, 8.0)  # seconds after its kill, failover or not (cluster-node-timeout 5)


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
        application: Application | None = None,
        max_pause: float = 20.0,
        overlap: bool = True,
        failover_first: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        self._system, self._history, self._rng = system, history, rng
        self._faults, self._max_pause, self._say = faults, max_pause, say
        self._overlap = overlap
        self._failover_first = failover_first
        self._held_nodes: set[int] = set()  # nodes under a fault now
        self._redis_held = False  # a Redis restart or failover under way
        self._application = application
        self._application_held = False  # the application misbehaving now
        self._actions = {
            "kill": self._kill,
            "term": self._term,
            "pause": self._pause,
            "pubsub": self._pubsub,
            "redis-restart": self._redis_restart,
            "blackhole": self._blackhole,
            "primary-kill": self._primary_kill,
            "app": self._app,
        }

    async def run(self, seconds: float) -> None:
        """Inject faults for `seconds`; returns once every fault begun is healed."""
        until = self._history.now() + seconds
        under_way: set[asyncio.Task[None]] = set()
        try:
            while self._history.now() < until and self._faults:
                await asyncio.sleep(self._rng.uniform(*GAP))
                if self._history.now() >= until:
                    break
                fault = self._actions[self._rng.choice(self._faults)]()
                if not self._overlap:
                    await fault
                    continue
                task = asyncio.create_task(fault)
                under_way.add(task)
                task.add_done_callback(under_way.discard)
        finally:
            outcomes = await asyncio.gather(*under_way, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _take_node(self) -> int | None:
        """A node no fault holds now, marked as held; None when every one is."""
        free = [i for i in range(len(self._system.nodes)) if i not in self._held_nodes]
        if not free:
            return None
        index = self._rng.choice(free)
        self._held_nodes.add(index)
        return index

    def _begin(self, kind: str, target: str) -> Fault:
        fault = self._history.fault(kind, target)
        self._say(f"chaos: t={fault.start:6.1f}s {kind} {target}")
        return fault

    def _end(self, fault: Fault, node: int | None = None) -> None:
        fault.end = self._history.now()
        if node is not None:
            self._held_nodes.discard(node)

    async def _kill(self) -> None:
        index = self._take_node()
        if index is None:
            return
        fault = self._begin("kill", self._system.node_name(index))
        try:
            self._system.signal_node(index, signal.SIGKILL)
            await self._system.wait_node_exit(index)
            await asyncio.sleep(self._rng.uniform(1.0, 5.0))
            await self._system.restart_node(index)
        finally:
            self._end(fault, index)

    async def _term(self) -> None:
        index = self._take_node()
        if index is None:
            return
        fault = self._begin("term", self._system.node_name(index))
        try:
            self._system.signal_node(index, signal.SIGTERM)
            await self._system.wait_node_exit(index)
            await self._system.restart_node(index)
        finally:
            self._end(fault, index)

    async def _pause(self) -> None:
        index = self._take_node()
        if index is None:
            return
        seconds = self._rng.uniform(1.0, self._max_pause)
        fault = self._begin("pause", f"{self._system.node_name(index)} {seconds:.1f}s")
        try:
            self._system.signal_node(index, signal.SIGSTOP)
            await asyncio.sleep(seconds)
        finally:
            self._system.signal_node(index, signal.SIGCONT)
            self._end(fault, index)

    async def _blackhole(self) -> None:
        index = self._take_node()
        if index is None:
            return
        seconds = self._rng.uniform(2.0, 8.0)
        fault = self._begin("blackhole", f"{self._system.node_name(index)} {seconds:.1f}s")
        try:
            self._system.proxies[index].blackhole()
            await asyncio.sleep(seconds)
        finally:
            self._system.proxies[index].heal()
            self._end(fault, index)

    async def _pubsub(self) -> None:
        fault = self._begin("pubsub", "every redis-server")
        await asyncio.to_thread(self._system.kill_pubsub)
        self._end(fault)

    async def _redis_restart(self) -> None:
        if self._redis_held:
            return
        self._redis_held = True
        index = self._rng.randrange(len(self._system.redis.processes))
        how = self._rng.choice((signal.SIGTERM, signal.SIGKILL))
        fault = self._begin("redis-restart", f"{self._system.redis_name(index)} {how.name}")
        try:
            await asyncio.to_thread(self._system.stop_redis, index, how)
            await self._system.start_redis(index)
        finally:
            self._redis_held = False
            self._end(fault)

    async def _primary_kill(self) -> None:
        if self._redis_held:
            return
        self._redis_held = True
        try:
            primaries = await asyncio.to_thread(self._system.primaries)
            ready = await asyncio.to_thread(self._system.primaries, replicated=True)
            if not ready:
                return
            index = self._rng.choice(ready)
            racing = not self._failover_first and self._rng.random() < 0.5
            how = "back at once" if racing else "back after the failover"
            fault = self._begin("primary-kill", f"{self._system.redis_name(index)} {how}")
            await asyncio.to_thread(self._system.stop_redis, index, signal.SIGKILL)
            if racing:  # as a supervisor restarts it: it may race the failover
                await asyncio.sleep(self._rng.uniform(*RACING_REJOIN))
            else:
                await self._system.wait_failover(len(primaries))
                await asyncio.sleep(self._rng.uniform(*REJOIN_AFTER))
            await self._system.start_redis(index)
            self._end(fault)
        finally:
            self._redis_held = False

    async def _app(self) -> None:
        application = self._application
        if application is None or self._application_held:
            return
        self._application_held = True
        seconds = self._rng.uniform(2.0, 8.0)
        refuse = self._rng.random() < 0.5
        fault = self._begin("app", f"{'503' if refuse else 'stalls'} {seconds:.1f}s")
        try:
            if refuse:
                application.refuse(seconds)
            else:
                application.stall(seconds)
            await asyncio.sleep(seconds)
        finally:
            application.heal()
            self._application_held = False
            self._end(fault)
