"""A local Redis Cluster (`RedisCluster`: three primaries with a replica each by
default), and `make cluster`'s choice of Redis (`local_redis`).

A cluster node needs its port + 10000 free too (the cluster bus); the nodes are joined
with `redis-cli --cluster create`, and the cluster is ready once every node says
`cluster_state:ok`, knows all the others, and every replica is in sync (a replica that
never synced would not take over).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from urllib.parse import quote

import redis

from gateway.broker.redis_cluster import parse_slots
from tooling.ports import cluster_port
from tooling.processes import Process, find_tool
from tooling.ready import wait_until
from tooling.redis import START_TIMEOUT, RedisServer, StopRequested, wait_replicated

CREATE_TIMEOUT = 30.0  # seconds for `redis-cli --cluster create`
KINDS = ("single", "cluster")


class RedisCluster:
    """`primaries` redis-servers with `replicas` replicas each, joined into one cluster."""

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        *,
        extra: Sequence[str] = (),
        password: str | None = None,
        node_timeout: int = 2000,
        directory: Path | None = None,
        persist: bool = False,
        cores: tuple[int, ...] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        """`node_timeout`: milliseconds before a silent node is failed over; `extra`
        redis-server arguments (they win over ours); with `password`, every node wants it
        (requirepass, and masterauth for replicas)."""
        if find_tool("redis-cli") is None:
            raise RuntimeError("a Redis Cluster needs redis-cli (it comes with redis-server)")
        self.primary_count, self.replicas, self.password = primaries, replicas, password
        if password is not None:
            extra = (*extra, "--requirepass", password, "--masterauth", password)
        self._own_dir = directory is None
        self.dir = (
            Path(tempfile.mkdtemp(prefix="chat-redis-cluster-")) if directory is None else directory
        )
        ports: list[int] = []
        for _ in range(primaries * (1 + replicas)):
            ports.append(cluster_port(ports))
        cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(node_timeout)]  # fmt: skip
        self.servers = [
            RedisServer(
                port,
                name=f"redis{index + 1}",
                directory=self.dir / f"redis{index + 1}",
                persist=persist,
                extra=(*cluster_args, *extra),
                cores=cores,
                die_with_parent=die_with_parent,
            )
            for index, port in enumerate(ports)
        ]
        self.by_port = {server.port: server for server in self.servers}

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    @property
    def processes(self) -> list[Process]:
        return [server.process for server in self.servers]

    @property
    def url(self) -> str:
        """What a gateway gets as --redis-url: every node a seed."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        credentials = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis+cluster://{credentials}{seeds}"

    def start(self, stop_requested: StopRequested = lambda: False) -> RedisCluster:
        """Start and join the nodes, ready and in sync; stop them all if that fails."""
        try:
            for server in self.servers:
                server.start(stop_requested)
            self._create()
            self.wait_ok(stop_requested=stop_requested)
            wait_replicated(self.ports, self.password)
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        cli = find_tool("redis-cli") or "redis-cli"
        auth = ["--no-auth-warning", "-a", self.password] if self.password is not None else []
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        try:
            subprocess.run(
                [cli, *auth, "--cluster", "create", *addresses,
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=CREATE_TIMEOUT,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = getattr(error, "stdout", b"") or b""
            raise RuntimeError(f"redis-cli --cluster create failed: {error}\n{output!r}") from None

    def start_node(self, port: int) -> None:
        """Start (or start again) the node on `port`, with its saved cluster config."""
        self.by_port[port].start()

    def wait_ok(
        self, ports: list[int] | None = None, stop_requested: StopRequested = lambda: False
    ) -> None:
        """Wait (bounded) until every running node (or those on `ports`) says the
        cluster is ok and knows every node."""
        for port in ports or self.live_ports():
            wait_until(
                f"cluster_state:ok on {port}",
                partial(self._ok, port),
                START_TIMEOUT,
                process=self.by_port[port].process,
                stop_requested=stop_requested,
                errors=(redis.RedisError,),
            )

    def _ok(self, port: int) -> bool:
        client = self.client(port)
        try:
            info = client.execute_command("CLUSTER INFO")  # parsed into a dict
        finally:
            client.close()
        known = int(info["cluster_known_nodes"])
        return bool(info["cluster_state"] == "ok" and known == len(self.servers))

    def client(self, port: int) -> redis.Redis:
        """A plain client of the node on `port`."""
        return self.by_port[port].client(self.password)

    def cluster_client(self) -> redis.RedisCluster:
        """A synchronous cluster client, for checks of our own."""
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], password=self.password)

    def live_ports(self) -> list[int]:
        return [server.port for server in self.servers if server.running]

    def primaries(self) -> dict[int, list[tuple[int, int]]]:
        """Each primary's port and slot ranges."""
        reply = self.client(self.live_ports()[0]).execute_command("CLUSTER SLOTS")
        return {port: ranges for (_, port), ranges in parse_slots(reply).items()}

    def replica_of(self, port: int) -> int:
        """The port of the replica of the primary at `port`."""
        info = self.client(port).info("replication")
        return int(info["slave0"]["port"])

    def migrate_slot(self, slot: int, source: int, target: int) -> None:
        """Move `slot` with its keys from the primary at `source` to the one at `target`,
        as `redis-cli --cluster reshard` does: IMPORTING, MIGRATING, MIGRATE, NODE."""
        src, dst = self.client(source), self.client(target)
        src_id, dst_id = (c.execute_command("CLUSTER MYID") for c in (src, dst))
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        for _ in range(10_000):  # bounded: 100 keys a round
            keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for port in [target, source, *(p for p in self.primaries() if p not in (source, target))]:
            self.client(port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)

    def signal(self, port: int, signum: signal.Signals) -> None:
        """Send the node at `port` `signum` (SIGSTOP freezes it, SIGCONT lets it go on)."""
        self.by_port[port].signal(signum)

    def kill(self, port: int) -> None:
        """SIGKILL the node at `port`."""
        self.by_port[port].kill()

    def stop(self) -> None:
        """Stop every node."""
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        """Stop every node; remove the cluster's directory when it made one."""
        for server in self.servers:
            server.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def local_redis(
    kind: str, directory: Path, *, persist: bool = False, die_with_parent: bool = False,
    node_timeout: int = 5000,
) -> RedisServer | RedisCluster:  # fmt: skip
    """`make cluster`'s Redis: one server (`single`) or a cluster of three primaries
    with a replica each (`cluster`), under `directory`, not started yet."""
    if kind == "single":
        return RedisServer(
            name="redis", directory=directory / "redis", persist=persist,
            die_with_parent=die_with_parent,
        )  # fmt: skip
    if kind == "cluster":
        return RedisCluster(
            directory=directory, persist=persist, die_with_parent=die_with_parent,
            node_timeout=node_timeout,
        )  # fmt: skip
    raise ValueError(f"REDIS must be one of {', '.join(KINDS)}, not {kind!r}")
