"""Presence (docs/protocol.md, "Presence"): per name, not per connection, with a grace period."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.broker.memory import MemoryBroker
from gateway.presence import Presence
from tests.conftest import TEST_SETTINGS, StartedBrokers, join_json, join_text
from tests.plugins.auth import connect_json

StartGateway = Callable[..., Awaitable[TestClient]]


def presence(peer_frames: list[dict], name: str) -> list[str]:
    return [f["event"] for f in peer_frames if f["type"] == "presence" and f["name"] == name]


async def test_join_and_leave_are_announced_to_the_room(client: TestClient) -> None:
    """Guards against silent arrivals and departures."""
    alice = await join_json(client, "alice")
    bob = await join_text(client, "bob")
    await alice.expect("presence", event="join", name="bob", room="lobby")
    await bob.ws.close()
    await alice.expect("presence", event="leave", name="bob", room="lobby")
    assert (await alice.request("who", room="lobby"))["members"] == ["alice"]
    assert presence(alice.frames, "bob") == ["join", "leave"]


async def test_a_reconnect_within_the_grace_period_sends_neither(gateway: StartGateway) -> None:
    """Guards against everyone seeing leave+join each time a user's network blinks."""
    client = await gateway(grace_period=0.4)
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    await alice.expect("presence", event="join", name="bob")
    await bob.ws.close()
    bob = await join_json(client, "bob", session=bob.welcome["session"])
    assert bob.subscribed["members"] == ["alice", "bob"]
    with pytest.raises(TimeoutError):  # a short, bounded negative wait past the grace period
        await alice.expect("presence", name="bob", timeout=0.8)
    assert presence(alice.frames, "bob") == ["join"]


async def test_leave_comes_after_the_grace_period(gateway: StartGateway) -> None:
    """Guards against a grace period that swallows the leave for good."""
    client = await gateway(grace_period=0.3)
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    await bob.ws.close()
    await alice.expect("presence", event="leave", name="bob", timeout=3)


async def test_a_refused_name_leaves_the_grace_period_running(gateway: StartGateway) -> None:
    """Guards against the leave going out at once, not after the grace period, when a
    connection is refused `name_taken` while that name's last connection here is in its
    grace period (the claim and the room's entry are one broker step, so the refused
    entry had cancelled the pending leave)."""
    client = await gateway(grace_period=1.5)
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    await alice.expect("presence", event="join", name="bob")
    await bob.ws.close()  # bob's leave from the lobby waits out the grace period
    await join_json(client, "bob", room="elsewhere")  # the name is someone else's now
    refused = await connect_json(client, name="bob")  # and the lobby's entry is refused
    assert (await refused.recv())["code"] == "name_taken"
    await alice.request("send", room="lobby", text="after")  # once through the broker
    await alice.expect("message", text="after")
    assert presence(alice.frames, "bob") == ["join"]  # no leave yet
    await alice.expect("presence", event="leave", name="bob", timeout=5)  # after it


async def test_a_return_after_an_immediate_leave_keeps_later_grace_periods(
    started_brokers: StartedBrokers,
) -> None:
    """Guards against a name entering again while its immediate leave (a removal, a
    refused entry) was still going out, which left the name marked as leaving past its
    grace period: its next reconnect within the grace period waited the period out and
    was announced as a leave and a join."""
    broker = await started_brokers.start(MemoryBroker(TEST_SETTINGS))
    presence = Presence(broker, grace_period=5.0)
    try:
        assert (await presence.enter("lobby", "bob"))[0]  # a join
        presence.exit("lobby", "bob", at_once=True)  # a leave at once: not gone out yet
        assert (await presence.enter("lobby", "bob"))[0]  # after it: a join again
        presence.exit("lobby", "bob")  # in its grace period
        async with asyncio.timeout(2.5):  # back at once: nothing to wait out
            joined, _ = await presence.enter("lobby", "bob")
        assert not joined  # neither a leave nor a join
    finally:
        await presence.close()


async def test_presence_follows_rooms_not_connections(client: TestClient) -> None:
    """Guards against presence that never notices a user moving between rooms."""
    alice = await join_json(client, "alice")
    await alice.request("join", room="dev")
    bob = await join_json(client, "bob")
    await bob.request("join", room="dev")
    await alice.expect("presence", event="join", name="bob", room="dev")
    await bob.request("leave", room="dev")
    await alice.expect("presence", event="leave", name="bob", room="dev")
    assert (await alice.request("who", room="lobby"))["members"] == ["alice", "bob"]
    assert (await alice.request("who", room="dev"))["members"] == ["alice"]


async def test_a_name_back_in_another_case_still_leaves(gateway: StartGateway) -> None:
    """Guards against a leave that never comes when 'Alice' returns as 'alice' within the
    grace period (the leave looked for the other spelling, and she stayed forever)."""
    client = await gateway(grace_period=0.3)
    watcher = await join_json(client, "watcher")
    first = await join_json(client, "Alice")
    await first.ws.close()
    second = await join_json(client, "alice")
    await second.ws.close()
    await watcher.expect("presence", event="leave", timeout=5)
    assert (await watcher.request("who", room="lobby"))["members"] == ["watcher"]
