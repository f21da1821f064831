"""A rolling restart of the `make cluster` topology under load loses and repeats nothing.

Real processes: redis-server, three gateway nodes and nginx in front (deploy/cluster.py,
what `make cluster` runs). Twenty JSON clients chat through nginx the whole time while
each node in turn gets SIGTERM (it drains: 503 to new upgrades, 1001 to its clients),
exits, and is started again on the same port; the next waits until it is ready.

The clients behave as the protocol asks: every send carries an `id` and is repeated
until acked (after `unavailable`, and after a reconnect), and a 1001 close is followed
by a reconnect to any node with `session` and `since`. Skipped without nginx or
redis-server unless CHAT_TEST_NGINX=require (CI sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway import app as gateway_app
from gateway.app import create_app, drain
from gateway.broker.redis_scripts import Keys
from gateway.node import NODE
from tests.conftest import JSON_PROTOCOL, TEST_SETTINGS, WAIT, JsonPeer, join_json
from tests.plugins.chat_users import LONG_WAIT, ROOM, ChatUser
from tests.plugins.deploy import nginx_or_skip
from tests.plugins.redis import RedisBackend
from tooling.cluster import Cluster
from tooling.ports import free_port
from tooling.processes import find_tool

CLIENTS = 20
GATEWAY_ARGS = ["--drain-seconds", "1", "--grace-period", "3", "--log-level", "INFO"]


def seq(offset: str) -> tuple[str, int]:
    epoch, _, number = offset.rpartition("-")
    return epoch, int(number)


class PresenceMonitor:
    """Every presence event the cluster publishes in ROOM, read straight from Redis
    (a client misses those sent while it reconnects; this sees them all)."""

    def __init__(self, redis_url: str) -> None:
        self.client = aioredis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()
        self.events: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pubsub.subscribe(Keys("chat:").room_channel(ROOM))  # see docs/redis.md
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["data"].startswith(b"p"):
                self.events.append(json.loads(message["data"][1:]))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()


@pytest.fixture
def local_cluster() -> Any:
    """The `make cluster` topology on a free port; every process stopped afterwards."""
    nginx_or_skip()
    if find_tool("redis-server") is None:
        if os.environ.get("CHAT_TEST_NGINX") == "require":
            pytest.fail("CHAT_TEST_NGINX=require, but redis-server is not installed")
        pytest.skip("needs redis-server (apt-get install redis-server)")
    running = Cluster(free_port(), quiet=True, gateway_args=GATEWAY_ARGS)
    sessions: list[int] = []
    try:
        running.start()
        yield running, sessions
    finally:
        sessions += [p.pid for p in running.processes() if p.pid is not None]
        running.stop()
        left = []
        for sid in sessions:  # each process (and its children) is a session of its own
            found = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True)
            left += found.stdout.split()
        assert not left, f"processes left running: {left}"


@contextlib.contextmanager
def logs_on_failure(running: Any) -> Iterator[None]:
    """Print the end of every process's log when the block fails."""
    try:
        yield
    except BaseException:
        for process in running.processes():
            print(f"--- {process.name} (exit {process.exit_code}) ---\n{process.tail(40)}")
        raise


@pytest.fixture
async def users(local_cluster: Any) -> AsyncIterator[list[ChatUser]]:
    running, _ = local_cluster
    async with aiohttp.ClientSession() as http:
        clients = [ChatUser(i, running.url, http) for i in range(CLIENTS)]
        try:
            yield clients
        finally:
            await asyncio.gather(*(c.stop() for c in clients))


@pytest.mark.timeout(180)
async def test_rolling_restart_under_load(local_cluster: Any, users: list[ChatUser]) -> None:
    """Guards against a restart that loses or repeats acked messages, shows users who
    merely moved as leaving and joining, or leaves clients disconnected.

    The figures (sent, delivered, lost, duplicated, the longest gaps) are printed.
    """
    running, sessions = local_cluster
    with logs_on_failure(running):
        await rolling_restart(running, sessions, users)


async def rolling_restart(running: Any, sessions: list[int], users: list[ChatUser]) -> None:
    """Chat through a rolling restart, print the figures, check every guarantee."""
    names = {user.name for user in users}
    for user in users:
        user.start()
        await user.until(user.up.is_set, "subscribed")
    for user in users:
        await user.until(partial(user.members_seen.issuperset, names), "join of everyone")
    monitor = PresenceMonitor(running.redis_url)
    await monitor.start()
    try:
        for user in users:
            user.presence.clear()  # from here on nobody leaves or joins
        seed = await users[0].send_until_acked("seed", "before the restarts")
        for user in users:
            await user.until(partial(user.has_received, {seed}), "seed message")

        stop_chatting = asyncio.Event()
        chatting = [asyncio.create_task(user.chat(stop_chatting)) for user in users]
        started = time.monotonic()
        restarts = []
        await asyncio.sleep(1.0)  # let the chat run before the first restart
        for index in range(len(running.nodes)):
            node = running.nodes[index]
            began = time.monotonic()
            node.signal(signal.SIGTERM)
            code = await asyncio.to_thread(node.wait, LONG_WAIT)
            assert code == 0, f"{running.node_id(index)} exited with {code}\n{node.tail()}"
            stopped = time.monotonic()
            sessions.append(node.pid)
            running.restart_node(index)
            await asyncio.to_thread(running.wait_node_ready, index, LONG_WAIT)
            restarts.append((stopped - began, time.monotonic() - stopped))
        await asyncio.sleep(1.0)  # and some chat after the last one
        stop_chatting.set()
        await asyncio.gather(*chatting)
        chat_seconds = time.monotonic() - started

        acked = {offset for user in users for offset in user.acked.values()}
        for user in users:
            await user.until(partial(user.has_received, acked), "delivery of every ack")
        async with asyncio.timeout(LONG_WAIT):
            answer = await users[-1].request({"type": "who", "room": ROOM}, "who-final")
    finally:
        await monitor.close()

    duplicated = sum(len(u.offsets) - len(set(u.offsets)) for u in users)
    lost = sum(len(acked - set(u.offsets)) for u in users)
    gaps = [b - a for u in users for a, b in zip(u.arrivals, u.arrivals[1:], strict=False)]
    downtimes = [d for u in users for d in u.downtimes]
    codes = sum((u.close_codes for u in users), Counter())
    figures = (
        f"\nrolling restart of {len(running.nodes)} nodes, {CLIENTS} clients via nginx, "
        f"{chat_seconds:.1f}s of chat\n"
        f"  node restarts (drain+exit s, start+ready s): "
        + ", ".join(f"({a:.2f}, {b:.2f})" for a, b in restarts)
        + f"\n  messages sent and acked: {len(acked)}; resends after a drop: "
        f"{sum(u.resends for u in users)}; `unavailable` retries: "
        f"{sum(u.unavailable for u in users)}\n"
        f"  delivered: {sum(len(u.offsets) for u in users)} (expected "
        f"{len(acked) * CLIENTS}); lost: {lost}; duplicated: {duplicated}\n"
        f"  reconnects: {sum(len(u.downtimes) for u in users)}; close codes: {dict(codes)}; "
        f"refused handshakes: {sum(len(u.refusals) for u in users)}\n"
        f"  longest time disconnected: {max(downtimes, default=0):.3f}s; longest gap "
        f"between two messages at a client: {max(gaps, default=0):.3f}s\n"
        f"  presence events published during the restarts: {len(monitor.events)}"
    )
    print(figures)
    assert lost == 0 and duplicated == 0
    for user in users:
        assert set(user.offsets) == acked, f"{user.name} got messages nobody acked"
        in_order = [seq(offset) for offset in user.offsets]
        assert in_order == sorted(in_order), f"{user.name} got messages out of order"
        assert user.presence == [], f"{user.name} saw {user.presence}"
        assert user.up.is_set() and user.ws is not None and not user.ws.closed
        assert user.downtimes, f"{user.name} was never moved: the restarts missed it"
        assert not user.refusals, f"{user.name} was refused: {user.refusals}"
    assert monitor.events == []
    assert set(codes) == {1001}
    assert sorted(answer["members"]) == sorted(names)
    assert_no_secret_in_logs(running, {s for user in users for s in user.secrets})
    # A drain's closes are full handshakes ending in a FIN: nginx saw no connection reset.
    nginx_log = (running.dir / "nginx.log").read_text(errors="replace")
    assert "recv() failed" not in nginx_log and "reset by peer" not in nginx_log, nginx_log


def assert_no_secret_in_logs(running: Any, secrets: set[str]) -> None:
    """No session secret in any log of the deployment: the nodes', nginx's access and
    error logs (nginx logs a failed upstream request's whole request line), Redis's."""
    logs = {path.name: path.read_text(errors="replace") for path in running.dir.glob("*.log")}
    assert "nginx.log" in logs and "/ws" in logs["nginx.log"], sorted(logs)  # not vacuous
    assert len(secrets) >= CLIENTS
    for name, text in logs.items():
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, f"{name} holds {len(leaked)} session secrets, e.g. {leaked[0]}"


# --- the same, in one process: the drain and the hand-over on their own ------------------


async def test_a_draining_node_refuses_new_clients_and_closes_the_rest_in_batches(
    gateway: Callable[..., Awaitable[TestClient]],
) -> None:
    """Guards against a stopping node that still looks ready, upgrades new WebSockets,
    or closes everyone in the same instant (all its clients would reconnect at once)."""
    client = await gateway(drain_seconds=0.6)
    peers = [await join_json(client, f"u{i}") for i in range(6)]
    draining = asyncio.create_task(drain(client.app))
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", params={"name": "late"}, protocols=(JSON_PROTOCOL,))
    assert refused.value.status == 503
    started = time.monotonic()

    async def closed(peer: JsonPeer) -> tuple[int | None, float]:
        return await peer.close_code(), time.monotonic() - started

    results = await asyncio.gather(*(closed(peer) for peer in peers))
    assert [code for code, _ in results] == [1001] * len(peers)
    times = sorted(at for _, at in results)
    assert times[-1] - times[0] >= 0.3  # spread over the drain period, not all at once
    async with asyncio.timeout(WAIT):
        await draining


async def test_draining_an_idle_node_does_not_wait(
    gateway: Callable[..., Awaitable[TestClient]],
) -> None:
    """Guards against a node with no connections sitting out the whole drain period."""
    client = await gateway(drain_seconds=30)
    async with asyncio.timeout(2):
        await drain(client.app)
    assert (await client.get("/readyz")).status == 503


async def test_presence_is_handed_over_to_the_node_a_user_moves_to(
    redis_backend: RedisBackend, aiohttp_client: Any
) -> None:
    """Guards against a stopping node whose users show as leaving and joining when they
    move to another node, and against real leavers waiting out the presence timeout."""
    prefix = redis_backend.new_prefix()
    nodes = []
    for node_id in ("n0", "n1"):
        settings = replace(
            TEST_SETTINGS,
            node_id=node_id,
            grace_period=1.5,
            presence_timeout=20.0,
            drain_seconds=0.2,
        )
        settings, broker = redis_backend.broker(settings, prefix)
        nodes.append(await aiohttp_client(create_app(settings, broker)))
    stopping, staying = nodes
    mover = await join_json(stopping, "mover")
    leaver = await join_json(stopping, "leaver")
    watcher = await join_json(staying, "watcher")
    await drain(stopping.app)
    assert await mover.close_code() == 1001 and await leaver.close_code() == 1001
    mover = await join_json(staying, "mover", session=mover.welcome["session"])
    assert mover.subscribed["members"] == ["leaver", "mover", "watcher"]
    await stopping.close()  # shutdown: the hand-over, as on SIGTERM after the drain
    # Within the grace period and one beat of the other node (1.5 s each), long before
    # the presence timeout (20 s): handed over, not expired.
    await watcher.expect("presence", event="leave", name="leaver", timeout=8)
    await mover.request("send", room="lobby", text="marker")
    await watcher.expect("message", text="marker")
    others = [(f["event"], f["name"]) for f in watcher.frames if f["type"] == "presence"]
    assert others == [("join", "watcher"), ("leave", "leaver")]
    assert (await watcher.request("who", room="lobby"))["members"] == ["mover", "watcher"]


async def test_the_heartbeat_stops_even_when_a_cancel_is_swallowed(
    redis_backend: RedisBackend,
) -> None:
    """Guards against a node that never exits: on Python 3.11 redis-py's commands run in
    asyncio.wait_for, which can swallow the cancel meant to stop the heartbeat task."""
    _, broker = redis_backend.broker(TEST_SETTINGS, redis_backend.new_prefix())
    liveness = broker._liveness
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            swallowed.set()  # as wait_for does when the command had just completed
        await asyncio.sleep(WAIT)

    liveness._tasks = [asyncio.create_task(stubborn())]
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await liveness.close()
    assert swallowed.is_set()


async def test_a_connection_slow_to_close_does_not_abort_the_shutdown(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against a shutdown that gives up half-way (no hand-over, the broker left
    open) because one connection took longer to close than the shutdown waits for."""
    monkeypatch.setattr(gateway_app, "SHUTDOWN_CLOSE_TIMEOUT", 0.1)
    await join_json(client, "slow")
    (session,) = client.app[NODE].hub.sessions()
    finish = session.finish

    async def slow_finish() -> None:
        await asyncio.sleep(0.5)  # longer than the shutdown waits
        await finish()

    monkeypatch.setattr(session, "finish", slow_finish)
    async with asyncio.timeout(WAIT):
        await client.app.shutdown()  # raised TimeoutError
