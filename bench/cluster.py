"""The processes the bench starts and always stops: a redis-server of its own and N nodes.

Every child gets a free loopback port, its log in a temp file, the servers' cores
(sched_setaffinity before exec, so its threads inherit them), its own session (Ctrl-C
in the terminal reaches only the bench, which then stops them in order) and a parent
death signal: if the bench itself is killed, the kernel kills them too.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from bench.params import Node
from tooling.ports import free_port
from tooling.processes import ROOT, Process
from tooling.ready import accepts, get_status, wait_until
from tooling.redis import RedisServer, wait_replicated
from tooling.redis_cluster import RedisCluster

NODE_PEER_DIR = ROOT / "bench" / "nodepeer"
READY_TIMEOUT = 30.0
PEERS = ("gateway", "socketio", "node")
SHARD_NODE_TIMEOUT = 15000  # ms: redis-server's default; the bench fails nothing over


def managed(
    name: str, argv: list[str], cores: tuple[int, ...] | None, env: dict[str, str] | None = None
) -> Process:
    """One child process of the bench, started: on `cores`, killed if the bench dies."""
    return Process(
        name, argv, env=env, cores=cores, die_with_parent=True, death_signal=signal.SIGKILL
    ).start()


def wait_ready(proc: Process, url: str | None, port: int) -> None:
    """Poll (bounded) until `url` answers 200, or the port accepts when `url` is None."""
    if url is None:
        wait_until(proc.name, lambda: accepts(port), READY_TIMEOUT, process=proc)
    else:
        wait_until(proc.name, lambda: get_status(url) == 200, READY_TIMEOUT, process=proc)


def node_modules(cache: Path) -> Path | str:
    """`cache`/node_modules with socket.io and its Redis adapter (npm install, once);
    or why the Node peer cannot run here."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node or npm is not installed"
    cache.mkdir(parents=True, exist_ok=True)
    wanted = (NODE_PEER_DIR / "package.json").read_text()
    manifest = cache / "package.json"
    modules = cache / "node_modules"
    if manifest.exists() and manifest.read_text() == wanted and modules.is_dir():
        return modules
    manifest.write_text(wanted)
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"npm install failed: {exc}"
    if done.returncode != 0:
        manifest.unlink(missing_ok=True)
        return f"npm install failed: {done.stderr.strip()[-300:]}"
    return modules


class Cluster:
    """Redis (unless the gateway runs on its in-process broker) and `count` nodes of
    `peer`, started on entry and stopped on exit, whatever happened in between."""

    def __init__(
        self,
        peer: str,
        count: int,
        *,
        redis: bool,
        cores: tuple[int, ...] | None,
        modules: Path | None = None,
        shards: int = 0,
        replicas: int = 0,
        node_flags: tuple[str, ...] = (),
        kill_nodes: bool = False,
    ) -> None:
        """`replicas`: that many replicas of the Redis (of each shard); `node_flags`:
        more gateway flags (`--redis-ack-replicas 0`, say); `kill_nodes`: stop the nodes
        with SIGKILL (a node that held 18,000 connections takes longer than the stop's
        10 s to see them all close, and the bench is done with it)."""
        if peer != "gateway" and (not redis or shards):
            raise ValueError(f"the {peer} peer needs one redis-server")
        self.peer, self.count, self.use_redis, self.cores = peer, count, redis, cores
        self.shards = shards  # above 0: a Redis Cluster of that many primaries
        self.replicas, self.node_flags, self.kill_nodes = replicas, node_flags, kill_nodes
        self._modules = modules
        self._redis_dir: str | None = None
        self.redis: RedisServer | RedisCluster | None = None
        self.replica_servers: list[RedisServer] = []
        self.nodes: list[tuple[Process, int]] = []

    def __enter__(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def redis_url(self) -> str:
        return self.redis.url if self.redis is not None else ""

    def redis_processes(self) -> list[Process]:
        """Every Redis process of the bench (replicas included)."""
        servers = [*(self.redis.servers if self.redis else []), *self.replica_servers]
        return [process for server in servers for process in server.processes]

    @property
    def redis_pids(self) -> tuple[int, ...]:
        """Every Redis process's pid."""
        return tuple(proc.pid for proc in self.redis_processes() if proc.pid is not None)

    def node_info(self) -> tuple[Node, ...]:
        return tuple(Node("127.0.0.1", port, proc.pid or 0) for proc, port in self.nodes)

    def _start(self) -> None:
        if self.use_redis:
            self._start_redis()
        for index in range(self.count):
            port = free_port()
            proc = managed(
                f"{self.peer} node {index}",
                self._node_argv(port),
                self.cores,
                env={"NODE_PATH": str(self._modules)} if self._modules else None,
            )
            self.nodes.append((proc, port))
        for proc, port in self.nodes:
            ready = "/readyz" if self.peer == "gateway" else "/healthz"
            wait_ready(proc, f"http://127.0.0.1:{port}{ready}", port)

    def _start_redis(self) -> None:
        """One redis-server (with `replicas` replicas), or a Redis Cluster of `shards`
        primaries (with `replicas` each), ready and replicating."""
        self._redis_dir = tempfile.mkdtemp(prefix="chat-bench-redis-")
        directory = Path(self._redis_dir)
        if self.shards:
            self.redis = RedisCluster(
                self.shards, self.replicas, directory=directory, cores=self.cores,
                die_with_parent=True, node_timeout=SHARD_NODE_TIMEOUT,
            ).start()  # fmt: skip
            return
        self.redis = RedisServer(
            name="redis-server", directory=directory / "primary", cores=self.cores,
            die_with_parent=True,
        ).start()  # fmt: skip
        for index in range(self.replicas):
            replica = RedisServer(
                replica_of=self.redis.port, name=f"redis-server replica {index}",
                directory=directory / f"replica{index}", cores=self.cores, die_with_parent=True,
            )  # fmt: skip
            self.replica_servers.append(replica)
            replica.start()
        if self.replicas:
            wait_replicated([self.redis.port])

    def _node_argv(self, port: int) -> list[str]:
        if self.peer == "gateway":
            argv = [
                sys.executable,
                "-m",
                "gateway",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
                "--rate-per-second",
                "0",
                "--max-connections-per-ip",
                "0",
                "--max-connections",
                "0",
                "--join-rate-per-ip",
                "0",
                "--join-rate",
                "0",
                "--dm-recipient-rate",
                "0",
                "--drain-seconds",
                "0.5",
                *self.node_flags,
            ]
            return argv + (["--redis-url", self.redis_url] if self.use_redis else [])
        if self.peer == "socketio":
            return [
                sys.executable,
                "-m",
                "bench.peer_socketio",
                "--port",
                str(port),
                "--redis-url",
                self.redis_url,
            ]
        if self.peer == "node":
            return [
                "node",
                str(NODE_PEER_DIR / "server.js"),
                "--port",
                str(port),
                "--redis-url",
                self.redis_url,
            ]
        raise ValueError(f"unknown peer {self.peer!r}; expected one of {', '.join(PEERS)}")

    def failures(self) -> list[str]:
        """Nodes (or Redis) that died by themselves, with their logs' tails."""
        procs = [p for p, _ in self.nodes] + self.redis_processes()
        return [f"{p.name} exited:\n{p.output()[-800:]}" for p in procs if not p.running]

    def stop(self) -> None:
        """Stop every node, then Redis, then remove Redis's directory."""
        for proc, _ in self.nodes:
            if self.kill_nodes:
                proc.kill()
            proc.close()
        self.nodes = []
        for server in [*self.replica_servers, *(self.redis.servers if self.redis else [])]:
            server.close()
        self.redis, self.replica_servers = None, []
        if self._redis_dir is not None:
            shutil.rmtree(self._redis_dir, ignore_errors=True)
            self._redis_dir = None
