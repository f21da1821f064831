"""`make cluster`: the docker-compose topology as local processes, for development.

A redis-server on a free port (temp dir, nothing saved), or with `--redis cluster`
(`make cluster REDIS=cluster`) a Redis Cluster of three primaries and three replicas
(deploy/local_redis.py), three gateway nodes on free ports (node ids gateway1..3, as in
docker-compose.yml), and nginx with deploy/nginx.conf rendered for those ports,
listening on CLUSTER_PORT (default 8080). Every process is a child of this one, in a
temp dir of its own; Ctrl-C or SIGTERM stops them all.

    .venv/bin/python deploy/cluster.py [--port 8080] [--nodes 3] [--redis single|cluster]
                                       [-- gateway flags...]

CHAT_* variables in the environment reach every node (CHAT_NODE_ID, CHAT_PORT,
CHAT_HOST and CHAT_REDIS_URL are set per node). While the nodes run, their addresses
and ids are listed for Prometheus in deploy/prometheus/targets/local-cluster.json
(deploy/prometheus/prometheus.yml reads it). The tests use `Cluster` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling modules

from local_processes import (
    INSTALL,
    ClusterError,
    Interrupted,
    Process,
    find_tool,
    free_port,
    get_status,
    missing_tools,
    port_is_free,
)
from local_redis import KINDS, LocalRedis

__all__ = [
    "INSTALL",
    "Cluster",
    "ClusterError",
    "Interrupted",
    "Process",
    "find_tool",
    "free_port",
    "port_is_free",
    "render_nginx_conf",
]  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# Where `make cluster` lists its nodes for Prometheus (deploy/prometheus/prometheus.yml).
PROMETHEUS_TARGETS = ROOT / "deploy" / "prometheus" / "targets" / "local-cluster.json"
START_TIMEOUT = 20.0  # seconds for one process to become ready
POLL = 0.05  # seconds between two readiness checks (every wait has a deadline)

# The lines of deploy/nginx.conf that differ between compose and the local cluster.
LISTEN_LINE = re.compile(r"^(\s*)listen\s+8080;$", re.MULTILINE)
UPSTREAM_LINE = re.compile(r"^(\s*)server\s+gateway\d+:8080(\s[^;]*)?;\n", re.MULTILINE)


def render_nginx_conf(template: str, listen: str, upstreams: Sequence[str]) -> str:
    """deploy/nginx.conf with `listen`, and each upstream's servers set to `upstreams`.

    The compose lines are found by pattern: every block of `server gatewayN:8080 ...;`
    lines becomes one line per address, with the block's parameters. A file without
    exactly one `listen 8080;` or without such a block is an error, so the two
    deployments cannot silently drift apart.
    """
    if len(LISTEN_LINE.findall(template)) != 1:
        raise ClusterError(f"{NGINX_CONF} must have exactly one `listen 8080;` line")
    blocks: list[list[re.Match[str]]] = []
    for match in UPSTREAM_LINE.finditer(template):
        if blocks and blocks[-1][-1].end() == match.start():
            blocks[-1].append(match)
        else:
            blocks.append([match])
    if not blocks:
        raise ClusterError(f"{NGINX_CONF} has no `server gatewayN:8080` lines")
    parts, done = [], 0
    for block in blocks:
        indent, params = block[0].group(1), block[0].group(2) or ""
        parts.append(template[done : block[0].start()])
        parts.extend(f"{indent}server {address}{params};\n" for address in upstreams)
        done = block[-1].end()
    parts.append(template[done:])
    return LISTEN_LINE.sub(lambda m: f"{m.group(1)}listen {listen};", "".join(parts))


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
        self.redis = LocalRedis(redis, self.dir, self._log, die_with_parent=die_with_parent)
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

    # --- starting ----------------------------------------------------------------

    def start(self) -> Cluster:
        """Start Redis, the nodes and nginx, each ready before the next; raises ClusterError."""
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
            self.redis.start(self._wait)
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
            **os.environ,
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
            die_with_parent=self.die_with_parent,
        )

    def node_url(self, index: int, path: str = "/readyz") -> str:
        return f"http://127.0.0.1:{self.node_ports[index]}{path}"

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

    def render_nginx_conf(self) -> str:
        upstreams = [f"127.0.0.1:{port}" for port in self.node_ports]
        return render_nginx_conf(NGINX_CONF.read_text(), f"{self.host}:{self.port}", upstreams)

    def nginx_argv(self, conf: Path) -> list[str]:
        """nginx in the foreground, with its prefix, temp dirs and pid file under ours."""
        prefix = conf.parent
        nginx = find_tool("nginx") or "nginx"
        return [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr",
                "-g", f"daemon off; pid {prefix / 'nginx.pid'};"]  # fmt: skip

    def _start_nginx(self) -> None:
        prefix = self.dir / "nginx"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(self.render_nginx_conf())
        self.nginx = Process(
            "nginx",
            self.nginx_argv(conf),
            stop_signal=signal.SIGQUIT,  # graceful; the nodes have closed every WebSocket
            log=self._log("nginx"),
            die_with_parent=self.die_with_parent,
        ).start()
        self._wait("nginx", self.nginx, lambda: get_status(f"{self.http_url}/readyz") == 200)

    def _log(self, name: str) -> Path | None:
        return self.dir / f"{name}.log" if self.quiet else None

    def _wait(
        self, name: str, process: Process, ready: Callable[[], bool], timeout: float = START_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.stop_requested():
                raise Interrupted(f"stopped while {name} was starting")
            if not process.running:
                raise ClusterError(
                    f"{name} exited with {process.exit_code} while starting\n{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} was not ready within {timeout:g}s\n{process.tail()}")
            time.sleep(POLL)

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make cluster",
        description="Redis, gateway nodes and nginx as local processes; Ctrl-C stops them all.",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("CLUSTER_PORT") or 8080))
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--redis",
        choices=KINDS,
        default=os.environ.get("REDIS") or "single",
        help="one redis-server, or a Redis Cluster of 3 primaries and 3 replicas",
    )
    parser.add_argument("gateway_args", nargs="*", help="flags for every node, after --")
    args = parser.parse_args(argv)

    missing = missing_tools()
    if missing:
        print(
            "make cluster needs redis-server and nginx. Install what is missing:", file=sys.stderr
        )
        for line in missing:
            print(f"  {line}", file=sys.stderr)
        return 1

    stop = StopSignals()
    stop.install()
    cluster = Cluster(
        args.port,
        nodes=args.nodes,
        gateway_args=args.gateway_args,
        redis=args.redis,
        die_with_parent=True,
        stop_requested=lambda: stop.requested,
        prometheus_targets=PROMETHEUS_TARGETS,
    )
    code = 0
    try:
        cluster.start()
        _print_banner(cluster)
        code = _watch(cluster, stop)
    except Interrupted:
        pass
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr)
        code = 1
    finally:
        print("cluster: stopping every process", flush=True)
        cluster.stop()
        left = [p.name for p in cluster.processes() if p.running]
        print("cluster: stopped" + (f"; still running: {left}" if left else ""), flush=True)
        stop.ignore()  # a late Ctrl-C must not kill the interpreter on its way out
    return code


def _print_banner(cluster: Cluster) -> None:
    nodes = ", ".join(f"{cluster.node_id(i)} :{port}" for i, port in enumerate(cluster.node_ports))
    print(
        f"\ncluster: up on {cluster.http_url}  (WebSocket {cluster.url})\n"
        f"  nodes: {nodes}; {cluster.redis.describe()}; files in {cluster.dir}\n"
        f"  chat:  .venv/bin/chat --url {cluster.url}\n"
        f"  prometheus: its nodes are listed in {PROMETHEUS_TARGETS.relative_to(ROOT)}\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )


class StopSignals:
    """SIGINT and SIGTERM as a flag that the main loop polls.

    The handler only sets an attribute: it runs in the main thread between two
    bytecodes, possibly inside code that holds a lock, so anything that takes one
    (`threading.Event.set`, print) can deadlock when a second Ctrl-C comes at the
    wrong moment. The interpreter's wakeup fd (a non-blocking pipe, written by its C
    handler) is what `wait` sleeps on, so a signal ends the wait at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (call from the main thread)."""
        signal.set_wakeup_fd(self._write)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested = True  # nothing else: see the class docstring

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds or until a signal; True once one has come."""
        if not self.requested:
            select.select([self._read], [], [], timeout)
            with suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass
        return self.requested

    def ignore(self) -> None:
        """Ignore SIGINT and SIGTERM from now on (the interpreter, exiting, would otherwise
        put back the default handlers, and a late Ctrl-C would kill it)."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _watch(cluster: Cluster, stop: StopSignals) -> int:
    """Run until a signal; a node that dies is reported (nginx routes around it), as
    is a Redis Cluster node (its replica takes over); a dead nginx or Redis ends it."""
    reported: set[str] = set()
    while not stop.wait(0.5):
        for process in cluster.processes():
            if process.running or process.name in reported:
                continue
            reported.add(process.name)
            print(f"cluster: {process.name} exited with {process.exit_code}", flush=True)
            if process is cluster.nginx or cluster.redis.processes == [process]:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
