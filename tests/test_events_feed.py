"""Events for the application (docs/operations.md, "Events for the application"): what
the nodes post, and how.

The application is `backend_app` (tests/backend_app.py), in the test process; the
gateways are in-process nodes (the `gateway` fixture, on each broker) or real processes
on a real Redis and a Redis Cluster. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.backend_http import TIMESTAMP_HEADER
from gateway.broker.event_log import PARTITIONS
from gateway.broker.redis.event_scripts import EventKeys
from gateway.broker.redis.keys import Keys
from gateway.offsets import parse_offset
from tests.backend_app import BackendApp, Received, Reply
from tests.conftest import join_json, metric, poll_until, read_metric
from tests.plugins.gateway_nodes import connect
from tests.plugins.redis import REDIS_SERVER, RedisBackend
from tooling.gateway import GatewayProcess

API_KEY = "events-test-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
EVENTS = "/events"
ARRIVAL = 20.0  # seconds for everything to arrive: a lease taken over, backoff included


class Accepted:
    """What the application accepted: the events of every POST it answered 2xx, in the
    order they came; the other answers are decided by `failing`."""

    def __init__(self, app: BackendApp) -> None:
        self.app = app
        self.failing = False  # answer 503 while true
        # ... and to a POST signed before this time (a killed node's, still being read)
        self.signed_before = 0.0
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        app.answer(EVENTS, handler=self._handle)

    def _handle(self, request: Received) -> Reply:
        signed = float(request.headers.get(TIMESTAMP_HEADER, "0"))
        if self.failing or signed < self.signed_before:
            self.refused += 1
            return Reply(503, {"error": "busy"})
        self.events.extend(request.json()["events"])
        return Reply(200, {})

    def of(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """The accepted events of `kind` whose fields equal `fields`."""
        return [
            e
            for e in self.events
            if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
        ]

    def texts(self, room: str) -> list[str]:
        """The texts of `room`'s accepted messages, in arrival order."""
        return [e["text"] for e in self.of("message", room=room)]

    async def until(self, condition: Callable[[], bool], timeout: float = ARRIVAL) -> None:
        await poll_until(condition, timeout)


def assert_in_offset_order(events: list[dict[str, Any]]) -> None:
    """Each room's messages arrived in offset order (every one once)."""
    rooms: dict[str, list[int]] = {}
    for event in events:
        if event["type"] == "message":
            parsed = parse_offset(event["offset"])
            assert parsed is not None, event
            rooms.setdefault(event["room"], []).append(parsed[1])
    for room, seqs in rooms.items():
        assert seqs == sorted(set(seqs)), f"{room}'s messages out of order: {seqs}"


def assert_well_formed(events: list[dict[str, Any]]) -> None:
    """Every event has an id, a type and a ts; no id was accepted twice."""
    for event in events:
        assert isinstance(event["id"], str) and event["id"], event
        assert isinstance(event["ts"], int), event
    repeated = [i for i, n in Counter(e["id"] for e in events).items() if n > 1]
    assert not repeated, f"events accepted twice: {repeated}"


def first_arrivals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`events` with every repeat of an id left out (what an application that
    de-duplicates by id keeps), in arrival order."""
    seen: set[str] = set()
    firsts = []
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            firsts.append(event)
    return firsts


@pytest.fixture
def accepted(backend_app: BackendApp) -> Accepted:
    return Accepted(backend_app)


# in-process nodes, on every broker -------------------------------------------------


async def events_node(gateway: Any, app: BackendApp, **overrides: Any) -> TestClient:
    client: TestClient = await gateway(
        backend_secret=app.secret, events_url=app.url(EVENTS), api_key=API_KEY, **overrides
    )
    return client


async def test_every_kind_of_event_arrives_signed_and_in_order(
    gateway: Any, backend_app: BackendApp, accepted: Accepted
) -> None:
    """Guards against an event type that is never written or never posted (the in-process
    broker included), a request the application cannot verify, and a room's messages
    out of order."""
    client = await events_node(gateway, backend_app)
    ada = await join_json(client, "ada", "lobby")
    bob = await join_json(client, "bob", "lobby")
    acks = [await ada.request("send", room="lobby", text=f"m{i}") for i in range(8)]
    assert all(a["type"] == "ack" for a in acks)
    assert (await ada.request("dm", to="bob", text="psst"))["type"] == "ack"
    deleted = await client.delete(f"/api/rooms/lobby/messages/{acks[0]['offset']}", headers=AUTH)
    assert deleted.status == 204
    banned = await client.put("/api/rooms/lobby/bans/bob", json={"seconds": 60}, headers=AUTH)
    assert banned.status == 204
    await bob.expect("removed", room="lobby")
    assert (await ada.request("leave", room="lobby"))["type"] == "unsubscribed"

    await accepted.until(
        lambda: (
            bool(accepted.of("presence", event="leave", name="ada"))
            and all(accepted.of(kind) for kind in ("removed", "deleted", "dm"))
            and len(accepted.of("message")) >= 8
        )
    )
    events = accepted.events
    assert_well_formed(events)
    assert_in_offset_order(events)
    assert accepted.texts("lobby") == [f"m{i}" for i in range(8)]
    assert [e["offset"] for e in accepted.of("message")] == [a["offset"] for a in acks]
    assert [e["from"] for e in accepted.of("message")] == ["ada"] * 8
    assert accepted.of("dm", to="bob", text="psst")[0]["from"] == "ada"
    [gone] = accepted.of("deleted")
    assert (gone["room"], gone["offset"]) == ("lobby", acks[0]["offset"])
    [removed] = accepted.of("removed")
    assert (removed["room"], removed["name"], removed["by"]) == ("lobby", "bob", "operator")
    assert removed["until"] > 0
    joins = [e["name"] for e in accepted.of("presence", room="lobby", event="join")]
    assert joins == ["ada", "bob"]
    for request in backend_app.received(EVENTS):
        assert backend_app.signed(request, max_age=60)

    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "chat_events_delivered_total") == len(events)
    assert metric(metrics, "chat_events_lag_seconds_count") == len(events)
    assert metric(metrics, 'chat_events_posted_total{result="ok"}') >= 1
    assert metric(metrics, "chat_events_partitions_held") == 16
    ready = await client.get("/readyz", headers={"Accept": "application/json"})
    assert ready.status == 200
    state = (await ready.json())["events"]
    assert state["partitions"] == list(range(16))
    assert state["last_failure"] is None


async def test_a_failing_application_gets_the_same_events_again_in_order(
    gateway: Any, backend_app: BackendApp, accepted: Accepted, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against events lost while the application answers 503, a later event of
    a room posted before an earlier one was accepted, a failing application making
    the node unready, and a log line per retry."""
    caplog.set_level(logging.INFO, logger="gateway.feed_delivery")
    accepted.failing = True
    client = await events_node(gateway, backend_app)
    for i in range(12):
        answer = await client.post(
            f"/api/rooms/r{i % 3}/messages", json={"from": "ada", "text": f"t{i}"}, headers=AUTH
        )
        assert answer.status == 201
    await poll_until(lambda: accepted.refused >= 3, timeout=10)
    body = await readyz_until(client, "12 waiting")  # the backlog is measured each tick
    assert "events: 16 partitions held, 12 waiting, oldest " in body
    assert "the application answered 503" in body
    assert await read_metric(client, 'chat_events_posted_total{result="failed"}') >= 3
    assert await read_metric(client, "chat_events_backlog") == 12
    assert await read_metric(client, "chat_events_oldest_age_seconds") > 0
    accepted.failing = False
    await accepted.until(lambda: len(accepted.of("message")) >= 12)
    assert_well_formed(accepted.events)
    assert_in_offset_order(accepted.events)
    for room in range(3):
        assert accepted.texts(f"r{room}") == [f"t{i}" for i in range(room, 12, 3)]
    await poll_until_metric(client, "chat_events_backlog", 0.0)  # measured each tick
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.feed_delivery"]
    assert said == [
        "events: the application answered 503; retrying with backoff (up to 30s apart)",
        "events: delivering again",
    ]


async def poll_until_metric(client: TestClient, sample: str, value: float) -> None:
    """Read /metrics (bounded) until `sample` is `value`."""
    async with asyncio.timeout(10):
        while await read_metric(client, sample) != value:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.1)


async def readyz_until(client: TestClient, says: str) -> str:
    """Read /readyz (bounded) until it answers 200 with `says` in its body (the failing
    application never makes the node unready); that body."""
    async with asyncio.timeout(10):
        while True:
            ready = await client.get("/readyz")
            assert ready.status == 200
            body = await ready.text()
            if says in body:
                return body
            await asyncio.sleep(0.1)


async def test_the_backlog_bound_drops_the_oldest_counted_and_logged(
    gateway: Any, backend_app: BackendApp, accepted: Accepted, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against a backlog growing without bound while the application is away,
    a drop nobody hears of (or a log line for each), and the events kept arriving out
    of order afterwards."""
    accepted.failing = True
    client = await events_node(gateway, backend_app, events_backlog=10)
    with caplog.at_level(logging.WARNING, logger="gateway.feed"):
        for i in range(25):
            answer = await client.post(
                "/api/rooms/full/messages", json={"from": "ada", "text": f"b{i}"}, headers=AUTH
            )
            assert answer.status == 201
    assert await read_metric(client, "chat_events_dropped_total") == 15
    drops = [r.getMessage() for r in caplog.records if "over --events-backlog" in r.getMessage()]
    # One line, naming the stream, not one per write over the bound (the others are
    # counted into the next line, at most 10 s later): the log is not flooded.
    assert len(drops) == 1
    assert "events: dropped the 1 oldest events of " in drops[0] and "full" in drops[0]
    await poll_until(lambda: accepted.refused >= 1, timeout=10)
    accepted.failing = False
    await accepted.until(lambda: "b24" in accepted.texts("full"))
    texts = accepted.texts("full")
    # The last 10 all arrive, in order; before them at most the batch that was already
    # being retried when the bound dropped its events (the application has those).
    assert texts[-10:] == [f"b{i}" for i in range(15, 25)]
    assert len(texts) < 25
    assert_in_offset_order(accepted.events)
    assert_well_formed(accepted.events)


# real processes on Redis and a Redis Cluster ----------------------------------------

needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="needs a real redis-server")


class Nodes:
    """Gateway processes posting events to one application, sharing one chat."""

    def __init__(self, url: str, prefix: str, app: BackendApp) -> None:
        self._args = ("--redis-url", url, "--redis-prefix", prefix, "--presence-timeout", "2",
                      "--events-url", app.url(EVENTS), "--events-batch", "20")  # fmt: skip
        self._env = {"CHAT_BACKEND_SECRET": app.secret, "CHAT_API_KEY": API_KEY}
        self.started: list[GatewayProcess] = []

    async def start(self, node_id: str, *extra: str) -> GatewayProcess:
        """Start a node (`extra` flags win over the common ones) and wait until it serves."""
        node = GatewayProcess(None, *self._args, "--node-id", node_id, *extra, env=self._env)
        await asyncio.to_thread(node.start)
        self.started.append(node)
        return node

    def close(self) -> None:
        for node in self.started:
            node.close()


@pytest.fixture(params=["redis", "cluster"])
def chat_redis(request: pytest.FixtureRequest, redis_backend: RedisBackend) -> tuple[str, str]:
    """The URL of a real Redis, then of a Redis Cluster, and a key prefix of its own."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url, redis_backend.new_prefix()
    if redis_backend.server is None:
        pytest.skip("needs a real redis-server")
    return redis_backend.server.url, redis_backend.new_prefix()


@pytest.fixture
def nodes(chat_redis: tuple[str, str], backend_app: BackendApp) -> Iterator[Nodes]:
    started = Nodes(*chat_redis, backend_app)
    try:
        yield started
    finally:
        started.close()


async def publish(http: aiohttp.ClientSession, node: GatewayProcess, room: str, text: str) -> str:
    """A message through `node`'s REST API; its offset."""
    url = f"http://127.0.0.1:{node.port}/api/rooms/{room}/messages"
    async with http.post(url, json={"from": "api", "text": text}, headers=AUTH) as answer:
        assert answer.status == 201, await answer.text()
        offset: str = (await answer.json())["offset"]
        return offset


async def node_metric(http: aiohttp.ClientSession, node: GatewayProcess, sample: str) -> float:
    async with http.get(f"http://127.0.0.1:{node.port}/metrics") as answer:
        return metric(await answer.text(), sample)


@needs_redis
async def test_three_nodes_post_each_event_once_in_order(
    nodes: Nodes, backend_app: BackendApp, accepted: Accepted, http: aiohttp.ClientSession
) -> None:
    """Guards against every node posting the same event (once per cluster), an acked
    message whose event never arrives, a room out of order across nodes and partitions,
    and presence, moderation or DM events missing on Redis."""
    started = [await nodes.start(f"e{i}") for i in range(3)]
    rooms = [f"room{r}" for r in range(4)]
    peers = [await connect(http, started[i], f"u{i}", room=rooms[i]) for i in range(3)]
    sent: dict[str, list[str]] = {room: [] for room in rooms}
    joined = [{rooms[i]} for i in range(3)]
    for n in range(10):
        for i, peer in enumerate(peers):
            room = rooms[(i + n) % len(rooms)]
            if room not in joined[i]:
                joined[i].add(room)
                await peer.send(type="join", room=room)
                await peer.expect("subscribed", room=room)
            ack = await peer.request("send", room=room, text=f"{peer.welcome['name']}:{n}")
            assert ack["type"] == "ack"
            sent[room].append(ack["offset"])
    assert (await peers[0].request("dm", to="u1", text="psst"))["type"] == "ack"
    async with http.delete(
        f"http://127.0.0.1:{started[2].port}/api/rooms/room0/messages/{sent['room0'][0]}",
        headers=AUTH,
    ) as answer:
        assert answer.status == 204
    async with http.put(
        f"http://127.0.0.1:{started[1].port}/api/rooms/room1/bans/u0",
        json={"seconds": 30},
        headers=AUTH,
    ) as answer:
        assert answer.status == 204
    await peers[2].ws.close()  # u2 leaves every room it was in

    await accepted.until(
        lambda: (
            sum(len(v) for v in sent.values()) <= len(accepted.of("message"))
            and bool(accepted.of("presence", event="leave", name="u2"))
        )
    )
    await accepted.until(lambda: bool(accepted.of("removed")) and bool(accepted.of("deleted")))
    events = accepted.events
    assert_well_formed(events)  # no event posted twice while the application said 2xx
    assert_in_offset_order(events)
    for room in rooms:
        assert [e["offset"] for e in accepted.of("message", room=room)] == sent[room]
    assert accepted.of("dm", to="u1", text="psst")[0]["from"] == "u0"
    assert accepted.of("deleted", room="room0")[0]["offset"] == sent["room0"][0]
    assert accepted.of("removed", room="room1", name="u0")[0]["by"] == "operator"
    assert accepted.of("presence", event="join", room="room3")
    for request in backend_app.received(EVENTS):
        assert backend_app.signed(request, max_age=60)
    # The work was shared: the partitions held add up to 16, over several nodes.
    await poll_until_shared(http, started)


async def poll_until_shared(http: aiohttp.ClientSession, started: list[GatewayProcess]) -> None:
    """Wait (bounded) until the live nodes hold the 16 partitions between them, each
    one at least one."""
    async with asyncio.timeout(15):
        while True:
            held = [await node_metric(http, n, "chat_events_partitions_held") for n in started]
            if sum(held) == 16 and min(held) >= 1:
                return
            await asyncio.sleep(0.2)


@needs_redis
async def test_events_wait_through_a_failing_application_and_every_node_killed(
    nodes: Nodes, backend_app: BackendApp, accepted: Accepted, http: aiohttp.ClientSession
) -> None:
    """Guards against events kept in a node's memory (lost when every node dies with
    SIGKILL), a partition whose lease nobody takes over, and events reordered by the
    retries while the application answered 503."""
    accepted.failing = True
    started = [await nodes.start(f"k{i}") for i in range(3)]
    offsets: dict[str, list[str]] = {f"w{r}": [] for r in range(3)}
    for n in range(12):
        room = f"w{n % 3}"
        offsets[room].append(await publish(http, started[n % 3], room, f"x{n}"))
    await poll_until(lambda: accepted.refused >= 3, timeout=10)
    for node in started:
        node.kill()
    assert accepted.events == []
    # A killed node's POST whose body was still being read would be answered after
    # this: refused by its signing time, so every event is the newcomer's to post.
    accepted.signed_before = time.time()
    accepted.failing = False
    newcomer = await nodes.start("k-new")
    await accepted.until(lambda: len(first_arrivals(accepted.events)) >= 12)
    # At least once: a post the application stored but whose answer never reached the
    # node (a connection broken on a loaded machine) is posted again, and counted again.
    # What must hold is that nothing is missing and each room's first arrivals are in
    # order; the three-node test above holds "never twice" where nothing breaks.
    firsts = first_arrivals(accepted.events)
    assert_well_formed(firsts)
    assert_in_offset_order(firsts)
    for room, expected in offsets.items():
        got = [e["offset"] for e in firsts if e["type"] == "message" and e["room"] == room]
        assert got == expected
    assert await node_metric(http, newcomer, "chat_events_delivered_total") >= 12


@needs_redis
async def test_a_stopped_node_gives_its_leases_up(
    redis_backend: RedisBackend, backend_app: BackendApp, accepted: Accepted
) -> None:
    """Guards against a node stopped on purpose keeping its partitions until their
    leases expire (a presence timeout without anyone posting them)."""
    assert redis_backend.server is not None
    prefix = redis_backend.new_prefix()
    nodes = Nodes(redis_backend.server.url, prefix, backend_app)
    keys = EventKeys(Keys(prefix))
    redis = redis_backend.client()
    try:
        node = await nodes.start("quitter", "--presence-timeout", "30")

        def leased() -> int:
            return sum(redis.exists(keys.lease(p)) for p in range(PARTITIONS))

        await poll_until(lambda: leased() == PARTITIONS, timeout=10)
        await asyncio.to_thread(node.stop)  # SIGTERM, and wait for the process to end
        assert leased() == 0
    finally:
        redis.close()
        nodes.close()


@pytest.mark.parametrize("broker_kind", ["redis"])
async def test_a_partition_handed_to_a_new_node_is_not_posted_twice_by_a_slow_application(
    gateway: Any, backend_app: BackendApp
) -> None:
    """Guards against a node that gives a partition up to a newcomer (its share shrank)
    cutting its post under way short and releasing the lease: the application, slower
    than that cut but well within the post's timeout, stores the batch and the
    newcomer posts it again. Once per cluster must hold while the application answers
    2xx, however slowly."""
    received: list[str] = []

    def slow(request: Received) -> Reply:
        received.extend(e["id"] for e in request.json()["events"])
        return Reply(200, {}, delay=5.0)  # stored at once, answered 5 s later

    backend_app.answer(EVENTS, handler=slow)
    # A lease of 6 s, renewed every 2 s: a round of the feed held up 2 s costs no lease.
    first = await events_node(gateway, backend_app, node_id="n1", presence_timeout=6.0)
    rooms = [f"slow{i}" for i in range(48)]  # most of the 16 partitions

    async def publish_all(client: TestClient, tag: str) -> None:
        for room in rooms:
            answer = await client.post(
                f"/api/rooms/{room}/messages", json={"from": "api", "text": tag}, headers=AUTH
            )
            assert answer.status == 201

    await publish_all(first, "a")
    await poll_until(lambda: len(received) >= 8, timeout=10)  # posts under way
    second = await events_node(gateway, backend_app, node_id="n2", presence_timeout=6.0)
    tags = "bcdefgh"
    for tag in tags:  # posts under way while the partitions move, one a round
        await publish_all(first, tag)
        await asyncio.sleep(2.0)
    await poll_until(lambda: len(set(received)) >= (1 + len(tags)) * len(rooms), timeout=40)
    repeated = [i for i, n in Counter(received).items() if n > 1]
    assert not repeated, f"{len(repeated)} events posted twice"
    assert await read_metric(second, "chat_events_partitions_held") >= 1
