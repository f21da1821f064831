"""A closed connection is freed by reference counting alone, with no reference cycle
left for the garbage collector.

A node freezes what survives each full collection (gateway/collector.py): an object
frozen while its connection was open and left inside a cycle when it closed would never
be freed. The first tests turn the collector off, open and close connections in the
ways a connection ends (the client closes; the server refuses the handshake; the link
refuses a frame; the rate limit closes it), wait until no session is left, then run one
collection that keeps what it finds: none of it may be a session or a link. The others
check the policy itself, and that a node process runs it.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.collector import FrozenGenerations
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


async def test_a_node_freezes_what_it_started_with(spawn: Spawn) -> None:
    """Guards against a node serving without the collector's policy (gateway/collector.py):
    what start-up made is frozen, and the collections' pauses are measured."""
    port = free_port()
    node = spawn("--port", str(port))
    node.port = port
    await wait_healthy(node)
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
        text = await response.text()
    assert metric(text, "chat_gc_frozen_objects") > 10_000  # the modules' objects, at least
    for generation in "012":  # exported from the start (with 7,000 allocations between
        # two young collections, an idle node may not have run one yet)
        assert metric(text, f'chat_gc_pause_seconds_count{{generation="{generation}"}}') >= 0


def test_the_survivors_of_a_full_collection_are_frozen() -> None:
    """Guards against full collections walking every connection again and again: what
    survives one is frozen, what dies by reference counting leaves the frozen set, and
    each pause is measured."""
    metrics = Metrics()
    collector = FrozenGenerations(metrics.gc_pauses)
    collector.start()
    try:
        kept = [[n] for n in range(10_000)]  # tracked objects, alive across the collection
        before = gc.get_freeze_count()
        gc.collect()
        frozen = gc.get_freeze_count()
        assert frozen >= before + len(kept)
        del kept
        assert gc.get_freeze_count() <= frozen - 10_000
    finally:
        collector.stop()
        gc.unfreeze()
    gc.collect()
    assert gc.get_freeze_count() == 0  # stopped: nothing more is frozen
    full = {"generation": "2"}
    assert metrics.registry.get_sample_value("chat_gc_pause_seconds_count", full) == 1
