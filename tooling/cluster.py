"""The local cluster of `make cluster` (deploy/cluster.py) and of the tests: Redis (one
server or a Redis Cluster), gateway nodes on free ports (node ids gateway1..N, as in
docker-compose.yml) and nginx with deploy/nginx.conf rendered for those ports, every
process a child of ours in a temp dir of its own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from tooling.nginx import NGINX_CONF, nginx_process, render_nginx_conf
from tooling.ports import free_port, port_is_free
from tooling.processes import Process, missing_tools
from tooling.ready import get_status, wait_until
from tooling.redis import RedisServer
from tooling.redis_cluster import RedisCluster, local_redis

START_TIMEOUT = 20.0  # seconds for one process to become ready


class ClusterError(RuntimeError):
    """The cluster could not start (a tool is missing, the port is taken)."""


class Cluster:
    """Redis, `nodes` gateway processes and nginx in front of them, all children of ours."""

    def __init__(
        self,
        port: int = 8080,
        *,
        nodes: int = 3,
        host: str = "127.0.0.1",
        gateway_args: Sequence[str] = (),
        redis: str = "single",
        quiet: bool = False,
        die_with_parent: bool = False,
        stop_requested: Callable[[], bool] = lambda: False,
        prometheus_targets: Path | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self.node_count = nodes
        self.gateway_args = list(gateway_args)
        self.quiet = quiet  # logs to files in the temp dir instead of our stdout
        self.die_with_parent = die_with_parent
        self.stop_requested = stop_requested
        self.prometheus_targets = prometheus_targets  # written while the nodes run
        self.dir = Path(tempfile.mkdtemp(prefix="chat-cluster-"))
        try:
            self.redis: RedisServer | RedisCluster = local_redis(
                redis, self.dir, die_with_parent=die_with_parent
            )
        except ValueError as error:
            raise ClusterError(str(error)) from None
        self.node_ports = [free_port() for _ in range(nodes)]
        self.nodes: list[Process] = []
        self.nginx: Process | None = None

    # --- addresses ---------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def url(self) -> str:
        """The balancer's WebSocket endpoint."""
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def node_id(self, index: int) -> str:
        return f"gateway{index + 1}"

    def node_url(self, index: int, path: str = "/readyz") -> str:
        return f"http://127.0.0.1:{self.node_ports[index]}{path}"

    # --- starting ----------------------------------------------------------------

    def start(self) -> Cluster:
        """Start Redis, the nodes and nginx, each ready before the next; raises
        ClusterError (or NotReady, Interrupted from tooling.ready)."""
        missing = missing_tools()
        if missing:
            raise ClusterError(
                "missing: " + "; ".join(missing) + " (the cluster needs both on PATH)"
            )
        if not port_is_free(self.port, self.host):
            raise ClusterError(
                f"port {self.port} is taken; choose another: make cluster CLUSTER_PORT=8081"
            )
        try:
            self.redis.start(self.stop_requested)
            self.nodes = [self._gateway(i) for i in range(self.node_count)]
            for node in self.nodes:
                node.start()
            for index in range(self.node_count):
                self.wait_node_ready(index)
            if self.prometheus_targets is not None:
                self.write_prometheus_targets(self.prometheus_targets)
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def _gateway(self, index: int) -> Process:
        env = {
            "CHAT_NODE_ID": self.node_id(index),
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(self.node_ports[index]),
            "CHAT_REDIS_URL": self.redis_url,
            # nginx (on 127.0.0.1) names the client in X-Forwarded-For: the per-address
            # limit (CHAT_MAX_CONNECTIONS_PER_IP, 100 by default) counts clients, not nginx.
            "CHAT_TRUSTED_PROXIES": os.environ.get("CHAT_TRUSTED_PROXIES", "127.0.0.1"),
            "PYTHONUNBUFFERED": "1",
        }
        return Process(
            self.node_id(index),
            [sys.executable, "-m", "gateway", *self.gateway_args],
            stop_signal=signal.SIGINT,  # the cluster stops as a whole: no drain needed
            env=env,
            log=self._log(self.node_id(index)),
            inherit_output=not self.quiet,
            die_with_parent=self.die_with_parent,
        )

    def wait_node_ready(self, index: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until node `index` answers /readyz with 200."""
        self._wait(
            self.node_id(index),
            self.nodes[index],
            lambda: get_status(self.node_url(index)) == 200,
            timeout,
        )

    def restart_node(self, index: int) -> None:
        """Start node `index` again, on the same port and with the same id (not waiting)."""
        if self.nodes[index].running:
            raise ClusterError(f"{self.node_id(index)} is still running")
        self.nodes[index].stop()  # reaped already: this closes its log
        self.nodes[index] = self._gateway(index).start()

    def write_prometheus_targets(self, path: Path) -> None:
        """List the nodes for Prometheus's file_sd: each address with its node id."""
        targets = [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"node": self.node_id(index)}}
            for index, port in enumerate(self.node_ports)
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")  # Prometheus never reads half a file
        temporary.write_text(json.dumps(targets, indent=2) + "\n")
        temporary.replace(path)

    def upstreams(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.node_ports]

    def render_nginx_conf(self) -> str:
        """deploy/nginx.conf for this cluster's ports."""
        listen = f"{self.host}:{self.port}"
        return render_nginx_conf(NGINX_CONF.read_text(), listen, self.upstreams())

    def _start_nginx(self) -> None:
        self.nginx = nginx_process(
            self.dir / "nginx",
            f"{self.host}:{self.port}",
            self.upstreams(),
            log=self._log("nginx"),
            inherit_output=not self.quiet,
            die_with_parent=self.die_with_parent,
        ).start()
        self._wait("nginx", self.nginx, lambda: get_status(f"{self.http_url}/readyz") == 200)

    def _log(self, name: str) -> Path | None:
        return self.dir / f"{name}.log" if self.quiet else None

    def _wait(
        self, name: str, process: Process, ready: Callable[[], bool], timeout: float = START_TIMEOUT
    ) -> None:
        wait_until(name, ready, timeout, process=process, stop_requested=self.stop_requested)

    # --- running and stopping --------------------------------------------------------

    def processes(self) -> list[Process]:
        return [p for p in (self.nginx, *self.nodes, *self.redis.processes) if p is not None]

    def stop(self) -> None:
        """Stop every process: the nodes first (each closes its WebSockets with 1001 and
        hands its presence over), then nginx, then Redis; remove the temp dir."""
        for node in self.nodes:
            node.signal(node.stop_signal)
        for node in self.nodes:
            node.stop()
        if self.nginx is not None:
            self.nginx.stop(timeout=5.0)
        self.redis.stop()
        if self.prometheus_targets is not None:
            self.prometheus_targets.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
