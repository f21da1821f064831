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
from gateway.broker.redis.keys import Keys
from gateway.node import NODE
from tests.conftest import JSON_PROTOCOL, TEST_SETTINGS, WAIT, JsonPeer, join_json
from tests.redis_backend import RedisBackend
from tests.test_deploy import cluster, nginx_or_skip

CLIENTS = 20
ROOM = "lobby"
GATEWAY_ARGS = ["--drain-seconds", "1", "--grace-period", "3", "--log-level", "INFO"]
SEND_PAUSE = 0.2  # seconds between one client's acked message and its next one
RETRY_FIRST, RETRY_CAP = 0.05, 1.0  # reconnect backoff, seconds
LONG_WAIT = 20.0  # the most any one expectation of the cluster test waits, in seconds


def seq(offset: str) -> tuple[str, int]:
    epoch, _, number = offset.rpartition("-")
    return epoch, int(number)


class ChatUser:
    """One JSON client that keeps itself connected and records everything it gets."""

    def __init__(self, index: int, url: str, http: aiohttp.ClientSession) -> None:
        self.name = f"user{index:02d}"
        # Half come back at once, half after a pause as `chat` does (its backoff starts
        # at 0.5 s): those are still away when the stopped node is already running again.
        self.comeback = 0.0 if index % 2 == 0 else 0.25 + 0.2 * (index % 5)
        self.url = url
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.up = asyncio.Event()  # connected and in the room
        self.changed = asyncio.Event()  # pulses on every frame
        self.session: str | None = None
        self.secrets: set[str] = set()  # every session secret it was given
        self.since: str | None = None  # the last message offset received
        self.offsets: list[str] = []  # every message received, in order
        self.arrivals: list[float] = []  # when each arrived (monotonic)
        self.presence: list[dict[str, Any]] = []
        self.members_seen: set[str] = set()
        self.nodes: list[str] = []  # the node of each welcome
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}  # ref -> answer
        self.acked: dict[str, str] = {}  # message id -> offset
        self.close_codes: Counter[int | None] = Counter()
        self.refusals: list[str] = []  # errors before a welcome
        self.downtimes: list[float] = []  # seconds from a close to the next welcome
        self.resends = 0
        self.unavailable = 0
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"client-{self.name}")

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def _query(self) -> dict[str, str]:
        """The URL's query: no secret in it (the session goes as a subprotocol, as the
        page and `chat` send it), since nginx logs failed requests with their query."""
        query = {"name": self.name, "room": ROOM}
        if self.since:
            query["since"] = self.since
        return query

    def _protocols(self) -> tuple[str, ...]:
        if self.session:
            return (JSON_PROTOCOL, f"chat.session.{self.session}")
        return (JSON_PROTOCOL,)

    async def _run(self) -> None:
        delay = RETRY_FIRST
        down_since: float | None = None
        while not self.stopping:
            try:
                ws = await self.http.ws_connect(
                    self.url, params=self._query(), protocols=self._protocols()
                )
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(delay)  # backoff: nginx had no node for us just now
                delay = min(delay * 2, RETRY_CAP)
                continue
            self.ws = ws
            welcomed = False
            code: int | None = None
            try:
                while True:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        code = int(msg.data) if msg.type is aiohttp.WSMsgType.CLOSE else None
                        break
                    frame = json.loads(msg.data)
                    if frame["type"] == "welcome":
                        welcomed = True
                        if down_since is not None:
                            self.downtimes.append(time.monotonic() - down_since)
                    elif frame["type"] == "error" and not welcomed:
                        self.refusals.append(frame["code"])
                    self._on_frame(frame)
            finally:
                self.up.clear()
                self.ws = None
                for future in self.pending.values():
                    if not future.done():
                        future.set_exception(ConnectionResetError("connection closed"))
                await ws.close()
            if self.stopping:
                return
            self.close_codes[code] += 1
            down_since = time.monotonic()
            if welcomed:
                delay = RETRY_FIRST
                await asyncio.sleep(self.comeback)  # a client's own reconnect pause
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "welcome":
            self.session = frame["session"]
            self.secrets.add(self.session)
            self.nodes.append(frame["node"])
        elif kind == "subscribed":
            self.members_seen.update(frame["members"])
            self.since = self.since or frame["offset"]
            self.up.set()
        elif kind == "message":
            self.offsets.append(frame["offset"])
            self.arrivals.append(time.monotonic())
            self.since = frame["offset"]
        elif kind == "presence":
            self.presence.append(frame)
            if frame["event"] == "join":
                self.members_seen.add(frame["name"])
        ref = frame.get("ref")
        if ref is not None and ref in self.pending and not self.pending[ref].done():
            self.pending[ref].set_result(frame)
        self.changed.set()
        self.changed.clear()

    async def request(self, frame: dict[str, Any], ref: str) -> dict[str, Any]:
        """Send `frame` on the current connection; its answer (raises if the connection
        drops first)."""
        await self.up.wait()
        ws = self.ws
        if ws is None:
            raise ConnectionResetError("not connected")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        try:
            await ws.send_str(json.dumps({**frame, "ref": ref}))
            return await future
        finally:
            self.pending.pop(ref, None)

    async def send_until_acked(self, msg_id: str, text: str) -> str:
        """Send with `msg_id` until acked; retried after `unavailable` and after a drop."""
        frame = {"type": "send", "room": ROOM, "text": text, "id": msg_id}
        async with asyncio.timeout(LONG_WAIT):
            while True:
                try:
                    answer = await self.request(frame, msg_id)
                except (ConnectionError, aiohttp.ClientError):
                    # The connection is closing (a send to it can fail before the reader
                    # has seen the close): yield to the reader, then wait for the reconnect.
                    self.resends += 1
                    await asyncio.sleep(RETRY_FIRST)
                    continue
                if answer["type"] == "ack":
                    self.acked[msg_id] = answer["offset"]
                    return str(answer["offset"])
                assert answer.get("code") == "unavailable", answer
                self.unavailable += 1
                await asyncio.sleep(RETRY_FIRST)  # the backend asked us to come back later

    async def chat(self, stop: asyncio.Event) -> None:
        """Send messages one after another until `stop` is set."""
        count = 0
        while not stop.is_set():
            count += 1
            await self.send_until_acked(f"{self.name}-{count}", f"{self.name} says {count}")
            await asyncio.sleep(SEND_PAUSE)  # pacing: under the rate limit

    def has_received(self, offsets: set[str]) -> bool:
        return offsets.issubset(self.offsets)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait (bounded) until `condition()` holds, re-checking on every frame."""
        try:
            async with asyncio.timeout(LONG_WAIT):
                while not condition():
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {what} within {LONG_WAIT:g}s") from None


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
    if cluster.find_tool("redis-server") is None:
        if os.environ.get("CHAT_TEST_NGINX") == "require":
            pytest.fail("CHAT_TEST_NGINX=require, but redis-server is not installed")
        pytest.skip("needs redis-server (apt-get install redis-server)")
    running = cluster.Cluster(cluster.free_port(), quiet=True, gateway_args=GATEWAY_ARGS)
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
