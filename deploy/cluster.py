"""`make cluster`: the docker-compose topology as local processes, for development.

A redis-server on a free port (temp dir, nothing saved), or with `--redis cluster`
(`make cluster REDIS=cluster`) a Redis Cluster of three primaries and three replicas
(tooling/redis_cluster.py), three gateway nodes on free ports (node ids gateway1..3, as in
docker-compose.yml), and nginx with deploy/nginx.conf rendered for those ports,
listening on CLUSTER_PORT (default 8080). Every process is a child of this one, in a
temp dir of its own; Ctrl-C or SIGTERM stops them all.

    .venv/bin/python deploy/cluster.py [--port 8080] [--nodes 3] [--redis single|cluster]
                                       [-- gateway flags...]

CHAT_* variables in the environment reach every node (CHAT_NODE_ID, CHAT_PORT,
CHAT_HOST and CHAT_REDIS_URL are set per node). While the nodes run, their addresses
and ids are listed for Prometheus in deploy/prometheus/targets/local-cluster.json
(deploy/prometheus/prometheus.yml reads it). The processes are tooling/cluster.py's
`Cluster`, which the tests use too; this is its command line.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from collections.abc import Sequence
from contextlib import suppress

from tooling.cluster import Cluster, ClusterError
from tooling.processes import ROOT, missing_tools
from tooling.ready import Interrupted
from tooling.redis_cluster import KINDS, RedisCluster

# Where `make cluster` lists its nodes for Prometheus (deploy/prometheus/prometheus.yml).
PROMETHEUS_TARGETS = ROOT / "deploy" / "prometheus" / "targets" / "local-cluster.json"


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
    except (ClusterError, RuntimeError) as error:
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
        f"  nodes: {nodes}; {describe(cluster)}; files in {cluster.dir}\n"
        f"  chat:  .venv/bin/chat --url {cluster.url}\n"
        f"  prometheus: its nodes are listed in {PROMETHEUS_TARGETS.relative_to(ROOT)}\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )


def describe(cluster: Cluster) -> str:
    """Its Redis, for the banner."""
    redis = cluster.redis
    if not isinstance(redis, RedisCluster):
        return f"redis :{redis.port}"
    ports = " ".join(f":{port}" for port in redis.ports)
    return f"redis cluster ({redis.primary_count} primaries, {redis.replicas} replica each) {ports}"


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
