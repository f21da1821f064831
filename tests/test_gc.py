"""A closed connection is freed by reference counting alone, with no reference cycle
left for the garbage collector.

Cyclic garbage waits for a collection, and a full one walks every connection of the
node (gateway/collector.py): a closed connection must not be left to it. The first
tests turn the collector off, open and close connections in the ways a connection ends
(the client closes; the server refuses the handshake; the link refuses a frame; the
rate limit closes it), wait until no session is left, then run one collection that
keeps what it finds: none of it may be a session or a link. The last ones check that a
node measures its collections' pauses.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.collector import CollectionPauses
from gateway.link import Link
from gateway.metrics import Metrics
from gateway.session import Session
from tests.conftest import JSON_PROTOCOL, JsonPeer, join_json, join_text, metric, poll_until
from tests.plugins.frames import sized_send
from tests.plugins.spawn import Spawn, wait_healthy
from tooling.ports import free_port

StartGateway = Callable[..., Awaitable[TestClient]]
CONNECTION_TYPES = (Session, Link)


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The collector collected once, then off for the test: what is freed, reference
    counting frees."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def sessions_left() -> bool:
    """Whether a session is still tracked: alive, or garbage in a cycle."""
    return any(isinstance(o, Session) for o in gc.get_objects())


def cyclic_garbage() -> list[str]:
    """The types of the sessions and links that only a collection frees (they are in a
    reference cycle)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = [type(o).__name__ for o in gc.garbage if isinstance(o, CONNECTION_TYPES)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return found


async def client_closes(client: TestClient) -> None:
    """Two JSON-mode clients and a text-mode one in a room; a message; they close."""
    alice, bob = await join_json(client, "alice"), await join_json(client, "bob")
    carol = await join_text(client, "carol")
    await alice.send(type="send", room="lobby", text="hi", ref="m1")
    await bob.expect("message", text="hi")
    for peer in (alice, bob, carol):
        await peer.ws.close()


async def handshake_refused(client: TestClient) -> None:
    """A second connection asks for a name that is taken: the server closes it (1008)."""
    first = await join_json(client, "dora")
    ws = await client.ws_connect("/ws", params={"name": "dora"}, protocols=(JSON_PROTOCOL,))
    assert await JsonPeer(ws).close_code() == 1008
    await first.ws.close()


async def frame_refused(client: TestClient) -> None:
    """A frame over the limit: the link refuses it and the server closes (1009)."""
    peer = await join_json(client, "erin")
    await peer.ws.send_str(sized_send(2049)[0])
    assert await peer.close_code() == 1009


async def rate_limited(client: TestClient) -> None:
    """Messages over the rate (its errors answered) until the server closes (1008)."""
    peer = await join_json(client, "fred")
    for n in range(3):
        await peer.send(type="send", room="lobby", text="hi", ref=f"m{n}")
    assert await peer.close_code() == 1008


@pytest.mark.parametrize("broker_kind", ["memory", "redis"])
@pytest.mark.parametrize("ending", [client_closes, handshake_refused, frame_refused, rate_limited])
async def test_closed_connections_leave_no_cycle(
    gateway: StartGateway,
    collector_off: None,
    ending: Callable[[TestClient], Awaitable[None]],
) -> None:
    """Guards against a connection kept in a reference cycle after it closed (an error
    held by the frame that raised it, a callback holding its owner): with the collector
    off, it would be tracked until the end of the test."""
    client = await gateway(  # the heartbeat on: the default
        heartbeat=30.0, max_frame_bytes=2048, rate_per_second=0.01, rate_burst=1, rate_strikes=2
    )
    await ending(client)
    await poll_until(lambda: not sessions_left())
    assert cyclic_garbage() == []


async def test_a_node_exports_its_collections_pauses(spawn: Spawn) -> None:
    """Guards against a node serving without start-up's objects frozen or without its
    collections' pauses measured (gateway/serving.py, gateway/collector.py)."""
    port = free_port()
    node = spawn("--port", str(port))
    node.port = port
    await wait_healthy(node)
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
        text = await response.text()
    for generation in "012":  # exported from the start (with 7,000 allocations between
        # two young collections, an idle node may not have run one yet)
        assert metric(text, f'chat_gc_pause_seconds_count{{generation="{generation}"}}') >= 0


def test_each_collection_pause_is_observed_by_generation() -> None:
    """Guards against a pause missed or counted under another generation."""
    metrics = Metrics()
    pauses = CollectionPauses(metrics.gc_pauses)
    pauses.start()
    try:
        gc.collect()  # one full collection
        gc.collect(0)  # one young
    finally:
        pauses.stop()
    gc.collect()  # stopped: not counted
    count = metrics.registry.get_sample_value
    assert count("chat_gc_pause_seconds_count", {"generation": "2"}) == 1
    assert count("chat_gc_pause_seconds_count", {"generation": "0"}) >= 1
