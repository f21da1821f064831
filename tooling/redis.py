"""redis-server processes: one server (`RedisServer`), ready once it answers, and the
wait for its replicas (a Redis Cluster is tooling/redis_cluster.py).

A server runs in a directory of its own (a temp dir unless given), saving nothing,
unless `persist` turns the append-only file on with an fsync per write, so that a
restart (even after kill -9) keeps every write it acked.
"""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import redis

from tooling.ports import free_port
from tooling.processes import Process, find_tool
from tooling.ready import wait_until

START_TIMEOUT = 30.0  # seconds for a server to answer, or a cluster to be ok

StopRequested = Callable[[], bool]


def redis_server() -> str | None:
    """The redis-server binary, if installed."""
    return find_tool("redis-server")


def ask(port: int, command: bytes) -> bytes:
    """`command` (inline) to the redis-server on `port`; its reply, or b"" if none."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(4096)
    except OSError:
        return b""


def answers(port: int) -> bool:
    """Whether the redis-server on `port` answers (PING, or a refusal for a password)."""
    return ask(port, b"PING").startswith((b"+PONG", b"-NOAUTH"))


class RedisServer:
    """One redis-server process of ours on `port` (a free one by default)."""

    def __init__(
        self,
        port: int | None = None,
        replica_of: int | None = None,
        *,
        name: str = "redis",
        directory: Path | None = None,
        persist: bool = False,
        extra: Sequence[str] = (),
        cores: tuple[int, ...] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        """With `replica_of`, a replica of the server on that port; `extra` redis-server
        arguments come last (a later one wins); `cores` and `die_with_parent` as for
        `Process`. Without `persist` there is nothing to save, so it stops with SIGKILL."""
        server = redis_server()
        if server is None:
            raise RuntimeError("redis-server is not installed")
        self.port = port or free_port()
        self.replica_of = replica_of
        self.name = name
        self._own_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="chat-redis-")) if directory is None else directory
        self.dir.mkdir(parents=True, exist_ok=True)
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if persist else [
            "--appendonly", "no"]  # fmt: skip
        argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *aof,
                "--repl-diskless-sync-delay", "0", "--dir", str(self.dir),
                *(["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []),
                *extra]  # fmt: skip
        self.process = Process(
            name,
            argv,
            log=self.dir / "redis.log",
            stop_signal=signal.SIGTERM if persist else signal.SIGKILL,
            die_with_parent=die_with_parent,
            death_signal=signal.SIGKILL,
            cores=cores,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def servers(self) -> list[RedisServer]:
        """Itself, as a one-node list (as `RedisCluster.servers`)."""
        return [self]

    @property
    def ports(self) -> list[int]:
        return [self.port]

    @property
    def processes(self) -> list[Process]:
        return [self.process]

    def start(self, stop_requested: StopRequested = lambda: False) -> RedisServer:
        """Start it (again, on its data) and wait (bounded) until it answers."""
        self.process.start()
        wait_until(
            f"{self.name} on {self.port}",
            lambda: answers(self.port),
            START_TIMEOUT,
            process=self.process,
            stop_requested=stop_requested,
        )
        return self

    def signal(self, signum: signal.Signals) -> None:
        """Send it `signum` (SIGSTOP freezes it, SIGCONT lets it go on)."""
        self.process.signal(signum)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop it and wait for the process."""
        self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL: it dies without a word, as in a crash."""
        self.process.kill()

    def close(self) -> None:
        """Stop it; remove its directory when it made one."""
        self.stop()
        self.process.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, password: str | None = None) -> redis.Redis:
        """A plain synchronous client, for checks of our own."""
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, password=password)


def replicated(client: redis.Redis) -> bool:
    """A primary has every replica online; a replica has its link to its primary up."""
    info = client.info("replication")
    if info["role"] != "master":
        return bool(info.get("master_link_status") == "up")
    count = int(info.get("connected_slaves", 0))
    return all(info.get(f"slave{i}", {}).get("state") == "online" for i in range(count))


def wait_replicated(ports: Sequence[int], password: str | None = None) -> None:
    """Wait (bounded) until each server on `ports` is `replicated`."""
    for port in ports:
        client = redis.Redis(port=port, socket_connect_timeout=0.5, password=password)
        try:
            wait_until(
                f"replication on {port}",
                partial(replicated, client),
                START_TIMEOUT,
                errors=(redis.RedisError,),
            )
        finally:
            client.close()
