"""The system under test: Redis (one server, or a Redis Cluster with replicas) with its
append-only file on, three gateway nodes as real processes and, on one Redis, a TCP
proxy between each node and Redis that the nemesis can blackhole.

Every node posts its events to the campaign's application (`node_env`: its
`--events-url` and `--backend-secret`, bench/chaos/application.py).

The processes are tooling's (tooling/processes.py, tooling/redis_cluster.py), as `make
cluster`'s: each in a session of its own, dying with us. Every wait is bounded; the
blocking ones run in a thread so that the clients keep working meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tooling.ports import free_port
from tooling.processes import Process
from tooling.ready import NotReady, get_status
from tooling.ready import wait_until as poll_until
from tooling.redis import ask
from tooling.redis_cluster import local_redis
from tooling.tcp_proxy import TcpProxy

NODES = 3
API_KEY = "chaos-api-key"
START_TIMEOUT = 30.0  # seconds for a process to serve
STOP_TIMEOUT = 15.0  # seconds for a draining node to exit
# Short timers, so that a campaign heals in seconds: a dead node's members are reaped
# after PRESENCE_TIMEOUT, a drain spreads its closes over 2 s.
NODE_ENV = {
    "CHAT_PRESENCE_TIMEOUT": "5",
    "CHAT_GRACE_PERIOD": "1",
    "CHAT_DRAIN_SECONDS": "2",
    "CHAT_HEARTBEAT": "5",
    "CHAT_API_KEY": API_KEY,
    "PYTHONUNBUFFERED": "1",
}


class SystemFailure(Exception):
    """A process of the system did not start or stop in time."""


def wait_until(
    what: str, ready: Callable[[], bool], timeout: float, process: Process | None = None
) -> None:
    """Poll `ready` until it is true; SystemFailure after `timeout` seconds, or when
    `process` exits first."""
    try:
        poll_until(what, ready, timeout, process=process)
    except NotReady as error:
        raise SystemFailure(str(error)) from None


class System:
    """Redis and the gateway nodes of one campaign, all children of this process."""

    def __init__(self, kind: str, directory: Path, node_env: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.dir = directory
        self.node_env = dict(node_env or {})  # more settings of every node (CHAT_*)
        self.redis = local_redis(kind, directory, die_with_parent=True, persist=True)
        self.ports = [free_port() for _ in range(NODES)]
        self.nodes: list[Process] = []
        self.proxies: list[TcpProxy] = []
        self.stopped: set[int] = set()  # nodes under SIGSTOP

    def _log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def node_name(self, index: int) -> str:
        return f"gateway{index + 1}"

    async def start(self) -> None:
        await asyncio.to_thread(self.redis.start)
        if self.kind == "single":
            for _ in range(NODES):
                self.proxies.append(await TcpProxy(self.redis.ports[0]).start())
        self.nodes = [self._node(i).start() for i in range(NODES)]
        for index in range(NODES):
            await self.wait_node_ready(index)

    def _node(self, index: int) -> Process:
        redis_url = self.proxies[index].redis_url if self.proxies else self.redis.url
        env = {
            **os.environ,
            **NODE_ENV,
            **self.node_env,
            "CHAT_NODE_ID": self.node_name(index),
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(self.ports[index]),
            "CHAT_REDIS_URL": redis_url,
            "CHAT_LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        }
        name = self.node_name(index)
        return Process(
            name,
            [sys.executable, "-m", "gateway"],
            env=env,
            log=self._log(name),
            die_with_parent=True,
        )

    # --- nodes ---------------------------------------------------------------------

    def http(self, index: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[index]}{path}"

    async def wait_node_ready(self, index: int) -> None:
        url = self.http(index, "/readyz")
        await asyncio.to_thread(
            wait_until,
            self.node_name(index),
            lambda: get_status(url) == 200,
            START_TIMEOUT,
            self.nodes[index],
        )

    def signal_node(self, index: int, sig: signal.Signals) -> None:
        self.nodes[index].signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped.add(index)
        elif sig == signal.SIGCONT:
            self.stopped.discard(index)

    async def wait_node_exit(self, index: int) -> int | None:
        return await asyncio.to_thread(self.nodes[index].wait, STOP_TIMEOUT)

    async def restart_node(self, index: int) -> None:
        """Start node `index` again (killing what is left of it), and wait until ready."""
        old = self.nodes[index]
        if old.running:
            self.signal_node(index, signal.SIGCONT)
        await asyncio.to_thread(old.stop, 5.0)
        self.nodes[index] = self._node(index).start()
        await self.wait_node_ready(index)

    def ready(self, index: int) -> bool:
        return get_status(self.http(index, "/readyz")) == 200

    def members(self, index: int, room: str) -> list[str] | None:
        """`room`'s members as node `index` answers them, or None when it does not."""
        try:
            with urllib.request.urlopen(
                self.http(index, f"/api/rooms/{room}/members"), timeout=2.0
            ) as answer:
                return list(json.load(answer)["members"])
        except (OSError, ValueError, KeyError):
            return None

    def events(self, index: int) -> dict[str, Any] | None:
        """Node `index`'s events feed as its /readyz JSON tells it (partitions held,
        backlog, ...), or None when it does not answer."""
        request = urllib.request.Request(
            self.http(index, "/readyz"), headers={"Accept": "application/json"}
        )
        try:
            try:
                with urllib.request.urlopen(request, timeout=2.0) as answer:
                    body = json.load(answer)
            except urllib.error.HTTPError as error:  # 503 when not ready: it says all the same
                body = json.load(error)
        except (OSError, ValueError):
            return None
        events = body.get("events") if isinstance(body, dict) else None
        return events if isinstance(events, dict) else None

    def post(self, room: str, text: str) -> str:
        """A message to `room` through node 0's REST API (seeds a room's history); its
        offset."""
        request = urllib.request.Request(
            self.http(0, f"/api/rooms/{room}/messages"),
            method="POST",
            data=json.dumps({"from": "chaos", "text": text}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5.0) as answer:
            return str(json.load(answer)["offset"])

    # --- redis ---------------------------------------------------------------------

    def redis_name(self, index: int) -> str:
        return self.redis.processes[index].name

    def primaries(self, *, replicated: bool = False) -> list[int]:
        """Indexes of the redis-servers that say they are a primary; with `replicated`,
        only those with a replica in sync (one that can take over: a replica cut off
        from its primary for long may not, cluster-replica-validity-factor)."""
        found = []
        for index, port in enumerate(self.redis.ports):
            info = ask(port, b"INFO replication")
            if b"role:master" in info and (not replicated or b"state=online" in info):
                found.append(index)
        return found

    async def wait_failover(self, primaries: int) -> None:
        """Wait (bounded) until `primaries` live redis-servers say they are a primary
        again: a replica took over from the one killed."""
        await asyncio.to_thread(
            wait_until, "a failover", lambda: len(self.primaries()) >= primaries, START_TIMEOUT
        )

    def kill_pubsub(self) -> None:
        for port in self.redis.ports:
            ask(port, b"CLIENT KILL TYPE pubsub")

    def stop_redis(self, index: int, sig: signal.Signals) -> None:
        process = self.redis.processes[index]
        process.signal(sig)
        if process.wait(STOP_TIMEOUT) is None:
            process.stop(5.0)

    async def start_redis(self, index: int) -> None:
        """Start redis-server `index` again on its data (append-only file, nodes.conf)."""
        process, port = self.redis.processes[index], self.redis.ports[index]
        await asyncio.to_thread(process.stop, 5.0)  # reaped: closes its log
        process.start()
        await asyncio.to_thread(
            wait_until,
            process.name,
            lambda: ask(port, b"PING") == b"+PONG\r\n",
            START_TIMEOUT,
            process,
        )
        await self.wait_redis_healthy()

    async def wait_redis_healthy(self) -> None:
        if self.kind == "cluster":
            await asyncio.to_thread(
                wait_until, "the Redis Cluster", self._cluster_ok, START_TIMEOUT
            )

    def _cluster_ok(self) -> bool:
        return all(b"cluster_state:ok" in ask(port, b"CLUSTER INFO") for port in self.redis.ports)

    # --- healing and stopping ---------------------------------------------------------

    async def heal(self) -> None:
        """Undo whatever a fault left: every node running and ready, Redis up."""
        for proxy in self.proxies:
            proxy.heal()
        for index in list(self.stopped):
            self.signal_node(index, signal.SIGCONT)
        for index, process in enumerate(self.redis.processes):
            if not process.running:
                await self.start_redis(index)
        await self.wait_redis_healthy()
        for index, node in enumerate(self.nodes):
            if not node.running:
                await self.restart_node(index)
            await self.wait_node_ready(index)

    async def stop(self) -> None:
        for index in list(self.stopped):
            self.signal_node(index, signal.SIGCONT)
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            await asyncio.to_thread(node.stop, STOP_TIMEOUT)
        for proxy in self.proxies:
            await proxy.close()
        await asyncio.to_thread(self.redis.stop)
