"""The processes the bench starts and always stops: a redis-server of its own and N nodes.

Every child gets a free loopback port, its log in a temp file, the servers' cores
(sched_setaffinity before exec, so its threads inherit them), its own session (Ctrl-C
in the terminal reaches only the bench, which then stops them in order) and a parent
death signal: if the bench itself is killed, the kernel kills them too.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from bench.params import Node
from bench.shards import cluster_url, start_shards, wait_replicated

ROOT = Path(__file__).resolve().parents[1]
NODE_PEER_DIR = ROOT / "bench" / "nodepeer"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1
PEERS = ("gateway", "socketio", "node")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_setup(cores: tuple[int, ...] | None) -> Callable[[], None]:
    """What a child runs between fork and exec: die with the bench, sit on `cores`."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if cores is not None:
            os.sched_setaffinity(0, cores)

    return setup


class Managed:
    """One child process of the bench."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        cores: tuple[int, ...] | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_setup(cores),  # the bench is single-threaded: safe
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL; reaps the process either way."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=STOP_TIMEOUT)
        self._log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_ready(proc: Managed, url: str | None, port: int) -> None:
    """Poll (bounded) until `url` answers 200, or the port accepts when `url` is None."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.log_tail()}")
        if url is not None and _answers(url):
            return
        if url is None:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready within {READY_TIMEOUT:.0f}s:\n{proc.log_tail()}")


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
    ) -> None:
        """`replicas`: that many replicas of the Redis (of each shard); `node_flags`:
        more gateway flags (`--redis-ack-replicas 0`, say)."""
        if peer != "gateway" and (not redis or shards):
            raise ValueError(f"the {peer} peer needs one redis-server")
        self.peer, self.count, self.use_redis, self.cores = peer, count, redis, cores
        self.shards = shards  # above 0: a Redis Cluster of that many primaries
        self.replicas, self.node_flags = replicas, node_flags
        self.replica_procs: list[Managed] = []
        self.shard_procs: list[tuple[Managed, int]] = []  # each shard and its port
        self._modules = modules
        self._redis_dir: str | None = None
        self.redis: Managed | None = None
        self.redis_port = 0
        self.nodes: list[tuple[Managed, int]] = []

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
        if self.shards:
            return cluster_url(self.shard_procs)
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def redis_pids(self) -> tuple[int, ...]:
        """Every Redis process of the bench."""
        procs = [proc for proc, _ in self.shard_procs] or ([self.redis] if self.redis else [])
        return tuple(proc.pid for proc in [*procs, *self.replica_procs])

    def node_info(self) -> tuple[Node, ...]:
        return tuple(Node("127.0.0.1", port, proc.pid) for proc, port in self.nodes)

    def _start(self) -> None:
        if self.use_redis and self.shards:
            self._redis_dir = tempfile.mkdtemp(prefix="chat-bench-redis-")
            self.shard_procs = start_shards(
                self.shards, Path(self._redis_dir), self.cores, self.replicas
            )
        elif self.use_redis:
            self._start_redis()
        for index in range(self.count):
            port = free_port()
            proc = Managed(
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
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed")
        self._redis_dir = tempfile.mkdtemp(prefix="chat-bench-redis-")
        self.redis_port = free_port()
        argv = [
            server,
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._redis_dir,
        ]
        self.redis = Managed("redis-server", argv, self.cores)
        wait_ready(self.redis, None, self.redis_port)
        for index in range(self.replicas):
            port = free_port()
            replica_dir = Path(self._redis_dir) / f"replica{index}"
            replica_dir.mkdir()
            replica_argv = [*argv[:2], str(port), *argv[3:-1], str(replica_dir),
                            "--replicaof", "127.0.0.1", str(self.redis_port)]  # fmt: skip
            replica = Managed(f"redis-server replica {index}", replica_argv, self.cores)
            self.replica_procs.append(replica)
            wait_ready(replica, None, port)
        if self.replicas:
            wait_replicated([self.redis_port])

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
        procs = [p for p, _ in self.nodes] + ([self.redis] if self.redis else [])
        procs += [proc for proc, _ in self.shard_procs] + self.replica_procs
        return [f"{p.name} exited:\n{p.log_tail(800)}" for p in procs if not p.alive()]

    def stop(self) -> None:
        """Stop every node, then Redis, then remove Redis's directory."""
        for proc, _ in self.nodes:
            proc.stop()
        self.nodes = []
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        for shard, _ in self.shard_procs:
            shard.stop()
        self.shard_procs = []
        for replica in self.replica_procs:
            replica.stop()
        self.replica_procs = []
        if self._redis_dir is not None:
            shutil.rmtree(self._redis_dir, ignore_errors=True)
            self._redis_dir = None
