"""The Redis side of `make cluster`: one redis-server, or (`REDIS=cluster`) a local
Redis Cluster of three primaries and three replicas.

Each redis-server runs in a directory of its own under the cluster's temp dir, saving
nothing, unless `persist` (the fault campaign, bench/chaos) turns the append-only file on
with an fsync per write, so a restart (even after kill -9) keeps every write it acked.
A cluster node needs its port + 10000 free too (the cluster bus), so its ports are
picked below 55535; the six are joined with `redis-cli --cluster create
--cluster-replicas 1`, and the cluster is ready once every node says
`cluster_state:ok` and knows all six.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from local_processes import ClusterError, Process, find_tool, free_port

KINDS = ("single", "cluster")
PRIMARIES, REPLICAS = 3, 1
BUS_OFFSET = 10000  # a cluster node's bus port is its port plus this
CREATE_TIMEOUT = 30.0  # seconds for `redis-cli --cluster create`

Wait = Callable[[str, Process, Callable[[], bool]], None]


def cluster_port(taken: list[int]) -> int:
    """A free port below 55535 whose cluster bus port is free too, neither of them one
    of `taken`'s ports or bus ports (two free ports picked apart can be the same)."""
    used = {*taken, *(port + BUS_OFFSET for port in taken)}
    for _ in range(200):  # bounded: free pairs are plentiful
        port = free_port()
        if port + BUS_OFFSET > 65535 or port in used or port + BUS_OFFSET in used:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise ClusterError("no free port pair for a Redis Cluster node")


def ask(port: int, command: bytes) -> bytes:
    """`command` (inline) to the redis-server on `port`; its reply, or b"" if none."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(4096)
    except OSError:
        return b""


class LocalRedis:
    """One redis-server or a Redis Cluster, as children of the cluster process."""

    def __init__(
        self, kind: str, directory: Path, log: Callable[[str], Path | None], *,
        die_with_parent: bool, persist: bool = False,
    ) -> None:  # fmt: skip
        if kind not in KINDS:
            raise ClusterError(f"REDIS must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self._dir = directory
        self._log = log
        self._die_with_parent = die_with_parent
        self._persist = persist
        self.ports = [free_port()]
        if kind == "cluster":
            self.ports = []
            for _ in range(PRIMARIES * (1 + REPLICAS)):
                self.ports.append(cluster_port(self.ports))
        self.processes: list[Process] = []

    @property
    def url(self) -> str:
        """What the gateway nodes get as --redis-url."""
        if self.kind == "single":
            return f"redis://127.0.0.1:{self.ports[0]}/0"
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def describe(self) -> str:
        if self.kind == "single":
            return f"redis :{self.ports[0]}"
        ports = " ".join(f":{port}" for port in self.ports)
        return f"redis cluster ({PRIMARIES} primaries, {REPLICAS} replica each) {ports}"

    def start(self, wait: Wait) -> None:
        """Start every redis-server (and join them), each ready before the next step."""
        for index, port in enumerate(self.ports):
            process = self._server(f"redis{index + 1}" if self.kind == "cluster" else "redis", port)
            self.processes.append(process.start())
            wait(process.name, process, lambda port=port: ask(port, b"PING") == b"+PONG\r\n")
        if self.kind == "cluster":
            self._create()
            for process, port in zip(self.processes, self.ports, strict=True):
                wait(process.name, process, lambda port=port: self._cluster_ok(port))

    def _server(self, name: str, port: int) -> Process:
        data = self._dir / name
        data.mkdir()
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self._persist else [
            "--appendonly", "no"]  # fmt: skip
        argv = [find_tool("redis-server") or "redis-server", "--port", str(port),
                "--bind", "127.0.0.1", "--save", "", *aof,
                "--dir", str(data), "--logfile", str(data / "redis.log")]  # fmt: skip
        if self.kind == "cluster":
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "5000"]  # fmt: skip
        return Process(name, argv, log=self._log(name), die_with_parent=self._die_with_parent)

    def _create(self) -> None:
        cli = find_tool("redis-cli")
        if cli is None:
            raise ClusterError("REDIS=cluster needs redis-cli (it comes with redis-server)")
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        try:
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(REPLICAS),
                 "--cluster-yes"],
                check=True, capture_output=True, timeout=CREATE_TIMEOUT,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = getattr(error, "stdout", b"") or b""
            raise ClusterError(f"redis-cli --cluster create failed: {error}\n{output!r}") from None

    def _cluster_ok(self, port: int) -> bool:
        info = ask(port, b"CLUSTER INFO")
        return (
            b"cluster_state:ok" in info
            and f"cluster_known_nodes:{len(self.ports)}".encode() in info
        )

    def stop(self) -> None:
        for process in self.processes:
            process.stop(timeout=5.0)
