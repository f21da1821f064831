"""A local Redis Cluster for the tests: three primaries and three replicas.

Six `redis-server --cluster-enabled yes` processes on free ports below 55535 (each needs
its port + 10000 free for the cluster bus), each in a temp dir, saving nothing; joined
with `redis-cli --cluster create --cluster-replicas 1`; ready once every node says
`cluster_state:ok` and knows them all. Tests that break shards make one of their own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import redis

from gateway.broker.redis.cluster import parse_slots
from tests.redis_backend import REDIS_SERVER

REDIS_CLI = shutil.which("redis-cli")
PRIMARIES = 3
START_TIMEOUT = 30.0


def cluster_port(taken: list[int]) -> int:
    """A port below 55535 whose cluster bus port (+10000) is free too, neither of them
    one of `taken`'s ports or bus ports (two free ports picked apart can be the same)."""
    used = {*taken, *(port + 10000 for port in taken)}
    for _ in range(200):  # bounded: free pairs are plentiful
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port >= 55535 or port in used or port + 10000 in used:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterServers:
    """Six redis-server processes (or three without replicas) joined into one cluster."""

    def __init__(
        self, replicas: int = 1, extra: tuple[str, ...] = (), password: str | None = None
    ) -> None:
        """Three primaries with `replicas` each; `extra` redis-server arguments; with
        `password`, every node wants it (requirepass, and masterauth for replicas)."""
        assert REDIS_SERVER is not None and REDIS_CLI is not None
        self.replicas = replicas
        self.password = password
        if password is not None:
            extra = (*extra, "--requirepass", password, "--masterauth", password)
        self.extra = extra
        self.ports: list[int] = []
        for _ in range(PRIMARIES * (1 + replicas)):
            self.ports.append(cluster_port(self.ports))
        self._dir = Path(tempfile.mkdtemp(prefix="chat-redis-cluster-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])
        credentials = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis+cluster://{credentials}{seeds}"

    def start_node(self, port: int) -> None:
        """Start (or start again) the node on `port`, with its saved cluster config."""
        assert REDIS_SERVER is not None
        node_dir = self._dir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(node_dir), "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
             "--repl-diskless-sync-delay", "0",
             "--logfile", str(node_dir / "log"), *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait(lambda: self.client(port).ping(), f"redis-server on {port}")

    def start(self) -> RedisClusterServers:
        """Start and join the nodes; stop whatever started if that fails."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> RedisClusterServers:
        for port in self.ports:
            self.start_node(port)
        assert REDIS_CLI is not None
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [REDIS_CLI, *self._auth, "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=START_TIMEOUT,
        )  # fmt: skip
        self.wait_ok()
        for port in self.ports:  # a replica that never synced would not take over
            self._wait(lambda port=port: self._synced(port), f"replication on {port}")
        return self

    def wait_ok(self, ports: list[int] | None = None) -> None:
        """Wait (bounded) until every running node says the cluster is ok."""
        for port in ports or [p for p, proc in self.procs.items() if proc.poll() is None]:
            self._wait(lambda port=port: self._ok(port), f"cluster_state:ok on {port}")

    def _synced(self, port: int) -> bool:
        info = self.client(port).info("replication")
        return bool(info["role"] == "master" or info.get("master_link_status") == "up")

    def _ok(self, port: int) -> bool:
        info = self.client(port).execute_command("CLUSTER INFO")  # parsed into a dict
        known = int(info["cluster_known_nodes"])
        return bool(info["cluster_state"] == "ok" and known == len(self.ports))

    @staticmethod
    def _wait(check: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {START_TIMEOUT:g}s")
            time.sleep(0.05)  # a poll interval, bounded by START_TIMEOUT

    @property
    def _auth(self) -> list[str]:
        return ["--no-auth-warning", "-a", self.password] if self.password is not None else []

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_connect_timeout=0.5, password=self.password)

    def cluster_client(self) -> redis.RedisCluster:
        """A synchronous cluster client, for the tests' own checks."""
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], password=self.password)

    def primaries(self) -> dict[int, list[tuple[int, int]]]:
        """Each primary's port and slot ranges."""
        reply = self.client(self.live_ports()[0]).execute_command("CLUSTER SLOTS")
        return {port: ranges for (_, port), ranges in parse_slots(reply).items()}

    def live_ports(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

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

    def replica_of(self, port: int) -> int:
        """The port of the replica of the primary at `port`."""
        info = self.client(port).info("replication")
        return int(info["slave0"]["port"])

    def signal(self, port: int, signum: int) -> None:
        """Send the node at `port` `signum` (SIGSTOP freezes it, SIGCONT lets it go on)."""
        self.procs[port].send_signal(signum)

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.kill()
        proc.wait(timeout=START_TIMEOUT)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=START_TIMEOUT)
        shutil.rmtree(self._dir, ignore_errors=True)
