"""Fixtures: a gateway app under test and WebSocket peers in both modes.

Every wait is bounded by WAIT seconds; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Settings
from tests.backend_app import BackendApp

if TYPE_CHECKING:
    from tests.plugins.redis import RedisBackend

pytest_plugins = [
    "tests.plugins.gateway_nodes",
    "tests.plugins.redis",
    "tests.plugins.redis_faults",
    "tests.plugins.spawn",
]

WAIT = 5.0  # the most any single expectation waits, in seconds
JSON_PROTOCOL = "chat.v1.json"

# The ack timeout is long: on a loaded machine a replica may take longer than 0.5 s,
# and only tests/test_redis_acks.py is about a replica that does not keep up.
TEST_SETTINGS = Settings(
    node_id="test-node",
    grace_period=0.05,
    heartbeat=0,
    probe_interval=0.2,
    presence_timeout=2.0,
    redis_ack_timeout=5.0,
)


async def poll_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Re-check `condition` (state outside any connection: Redis keys, a node's tables)
    every 20 ms until it holds; AssertionError after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (no event to wait on: a poll)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"still not true after {timeout:g}s") from None


class BareListener:
    """The node side of a bare broker (a test at the Broker interface): nothing to
    deliver to."""

    def on_room_event(self, event: object) -> None: ...

    def on_direct(self, event: object, name_key: str) -> None: ...

    def on_kick(self, connection: str) -> None: ...

    def on_removed(self, name: str, room: str, by: str, until: int | None) -> None: ...

    def on_disconnect(self, name_key: str) -> None: ...


class StartedBrokers:
    """The bare brokers a test started (each on a `BareListener`); the
    `started_brokers` fixture closes them when the test ends."""

    def __init__(self) -> None:
        self.brokers: list[Any] = []

    async def start(self, broker: Any) -> Any:
        """Start `broker` and keep it to close; returns it."""
        await broker.start(BareListener())
        self.brokers.append(broker)
        return broker


@pytest.fixture
async def started_brokers() -> AsyncIterator[StartedBrokers]:
    brokers = StartedBrokers()
    yield brokers
    for broker in brokers.brokers:
        await broker.close()


class PeerClosed(AssertionError):
    """The server closed the connection while a frame was expected."""


class Peer:
    """A WebSocket client; `frames` keeps everything received, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[Any] = []

    async def _receive(self, timeout: float) -> Any:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not WSMsgType.TEXT:
            raise PeerClosed(f"expected a frame, got {msg.type.name} (code {self.ws.close_code})")
        frame = self.decode(msg.data)
        self.frames.append(frame)
        return frame

    def decode(self, data: str) -> Any:
        return data

    async def recv(self, timeout: float = WAIT) -> Any:
        """The next frame."""
        return await self._receive(timeout)

    async def until(self, match: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        """Read frames until one matches; fail after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._receive(timeout)
                if match(frame):
                    return frame

    async def close_code(self, timeout: float = WAIT) -> int | None:
        """Read until the server closes; the code of its close frame (else the socket's)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type is WSMsgType.CLOSE:
                    return int(msg.data)  # the code in the server's close frame
                if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING):
                    return self.ws.close_code
                if msg.type is WSMsgType.ERROR:
                    return self.ws.close_code
                if msg.type is WSMsgType.TEXT:
                    self.frames.append(self.decode(msg.data))


class JsonPeer(Peer):
    """A JSON-mode client."""

    welcome: dict[str, Any]
    subscribed: dict[str, Any]

    def decode(self, data: str) -> Any:
        return json.loads(data)

    async def send(self, **frame: Any) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def expect(self, kind: str, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        """The next frame of `kind` whose fields equal `fields`, skipping others."""
        frame: dict[str, Any] = await self.until(
            lambda f: f.get("type") == kind and all(f.get(k) == v for k, v in fields.items()),
            timeout,
        )
        return frame

    async def request(self, frame_type: str, **fields: Any) -> dict[str, Any]:
        """Send a frame with a fresh ref; the answer carrying that ref."""
        ref = f"r{len(self.frames)}-{id(fields)}"
        await self.send(type=frame_type, ref=ref, **fields)
        answer: dict[str, Any] = await self.until(lambda f: f.get("ref") == ref)
        return answer


class TextPeer(Peer):
    """A text-mode client: frames are lines (a frame may hold several)."""

    async def say(self, line: str) -> None:
        await self.ws.send_str(line)

    async def expect_line(self, text: str, timeout: float = WAIT) -> str:
        """The next frame equal to `text` (or starting with it when it ends with '...')."""
        if text.endswith("..."):
            prefix = text[:-3]
            line: str = await self.until(lambda f: f.startswith(prefix), timeout)
        else:
            line = await self.until(lambda f: f == text, timeout)
        return line


Connect = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["memory", "redis", "cluster"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Each protocol test runs on the in-process broker, on Redis and on a Redis Cluster."""
    return str(request.param)


@pytest.fixture
async def gateway(
    aiohttp_client: Any,
    broker_kind: str,
    redis_backend: RedisBackend,
    request: pytest.FixtureRequest,
) -> Callable[..., Awaitable[TestClient]]:
    """Start a gateway node (settings overridable) and give its test client.

    Nodes started in one test share one chat: on Redis, one key prefix of their own.
    """
    prefix = redis_backend.new_prefix()

    async def start(**overrides: Any) -> TestClient:
        settings = replace(TEST_SETTINGS, **overrides)
        settings, broker = redis_backend.broker_of(broker_kind, settings, prefix, request)
        client: TestClient = await aiohttp_client(create_app(settings, broker))
        return client

    return start


@pytest.fixture
async def client(gateway: Callable[..., Awaitable[TestClient]]) -> TestClient:
    """A gateway with the test settings."""
    return await gateway()


async def join_json(client: TestClient, name: str, room: str = "lobby", **query: str) -> JsonPeer:
    """Connect in JSON mode and read `welcome` and `subscribed`."""
    params = {"name": name, "room": room, **query}
    ws = await client.ws_connect("/ws", params=params, protocols=(JSON_PROTOCOL,))
    peer = JsonPeer(ws)
    peer.welcome = await peer.expect("welcome")
    peer.subscribed = await peer.expect("subscribed", room=room)
    return peer


def metric(text: str, sample: str, missing: float | None = None) -> float:
    """The value of one sample line (name with labels) of a Prometheus text page;
    `missing` when it is absent (a labelled counter not counted yet), else a failure."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    if missing is None:
        raise AssertionError(f"{sample} missing from /metrics")
    return missing


async def read_metric(client: TestClient, sample: str, missing: float | None = None) -> float:
    """`metric` of the node's /metrics now."""
    response = await client.get("/metrics")
    assert response.status == 200
    return metric(await response.text(), sample, missing)


async def refused_status(client: TestClient, **kwargs: Any) -> int:
    """The HTTP status a /ws handshake was refused with (fails if it was upgraded)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws", params={"name": "mallory"}, **kwargs)
    return info.value.status


async def join_text(client: TestClient, name: str, room: str = "lobby") -> TextPeer:
    """Connect in text mode with the name in the query; read up to the room line."""
    ws = await client.ws_connect("/ws", params={"name": name, "room": room})
    peer = TextPeer(ws)
    await peer.expect_line(f"* welcome, {name}! /help lists the commands")
    await peer.expect_line(f"* you are in {room}; members: ...")
    return peer


@pytest.fixture
async def pages(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Pages in a headless Chromium (tests/web_support.py). Ask for it after the
    servers, so that it is torn down first: the screenshots show the pages still
    connected. Imported here, not at the top: only the page tests need Playwright."""
    from tests.web_support import Pages, chromium

    async with chromium() as browser:
        opened = Pages(browser, request.node.name)
        yield opened
        await opened.finish()


@pytest.fixture
async def backend_app() -> AsyncIterator[BackendApp]:
    """The application's backend (tests/backend_app.py): a small aiohttp app on a real
    port of 127.0.0.1 that records every request and answers per path as told."""
    async with BackendApp().running() as app:
        yield app
