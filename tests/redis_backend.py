"""A Redis for the tests: a real `redis-server` on a free port, or fakeredis without one.

Set CHAT_TEST_REDIS=require (CI does) to fail instead of falling back to fakeredis.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import fakeredis
import redis

from gateway.broker.redis import RedisBroker
from gateway.config import Settings

REDIS_SERVER = shutil.which("redis-server")
START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def name_holders(client: redis.Redis, name_hash: str) -> list[bytes]:
    """The nodes holding a shared (auth) name: one `c:<connection>` field per connection."""
    fields: dict[bytes, bytes] = client.hgetall(name_hash)  # type: ignore[assignment]
    return sorted(node for field, node in fields.items() if field.startswith(b"c:"))


class RedisServer:
    """A redis-server process of the test's own, in a temp dir, keeping nothing on disk."""

    def __init__(self, port: int | None = None, replica_of: int | None = None) -> None:
        """On `port` (a free one by default); with `replica_of`, a replica of the
        server on that port."""
        assert REDIS_SERVER is not None
        self.port = port or free_port()
        self.replica_of = replica_of
        self._dir = tempfile.mkdtemp(prefix="chat-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it and wait (bounded) until it answers PING."""
        assert REDIS_SERVER is not None
        self._proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", self._dir,
             "--logfile", str(Path(self._dir) / "log"),
             *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._proc.poll() is not None:
                        raise RuntimeError(f"redis-server on {self.port} did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def signal(self, signum: int) -> None:
        """Send the process `signum` (SIGSTOP freezes it, SIGCONT lets it go on)."""
        assert self._proc is not None
        self._proc.send_signal(signum)

    def stop(self) -> None:
        """Stop it (SIGKILL: nothing is saved anyway) and wait for the process."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=START_TIMEOUT)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def client(self) -> redis.Redis:
        """A plain synchronous client, for the tests' own checks."""
        return redis.Redis(port=self.port)


class RedisBackend:
    """What the suite's Redis tests run on: a real server, or fakeredis when none exists."""

    def __init__(self) -> None:
        required = os.environ.get("CHAT_TEST_REDIS") == "require"
        if REDIS_SERVER is None and required:
            raise RuntimeError("CHAT_TEST_REDIS=require, but there is no redis-server on PATH")
        self.server = RedisServer().start() if REDIS_SERVER else None
        self.fake = None if self.server else fakeredis.FakeServer()
        self._prefixes = itertools.count(1)

    @property
    def description(self) -> str:
        if self.server is not None:
            return f"real redis-server on port {self.server.port}"
        return "fakeredis (no redis-server on PATH: install it to test against real Redis)"

    def new_prefix(self) -> str:
        """A key prefix no other test uses."""
        return f"t{os.getpid()}-{next(self._prefixes)}:"

    def broker(self, settings: Settings, prefix: str) -> tuple[Settings, RedisBroker]:
        """Settings and a broker for one node on this backend, under `prefix`."""
        if self.server is not None:
            settings = replace(settings, redis_url=self.server.url, redis_prefix=prefix)
            return settings, RedisBroker(settings)
        settings = replace(settings, redis_url="redis://fakeredis", redis_prefix=prefix)
        return settings, RedisBroker(settings, fakeredis.FakeAsyncRedis(server=self.fake))

    def client(self) -> redis.Redis:
        """A plain synchronous client of this backend, for the tests' own checks."""
        if self.server is not None:
            return self.server.client()
        return fakeredis.FakeRedis(server=self.fake)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
