"""Offsets and resume (docs/protocol.md, "Offsets and resume"): no gap, no duplicate,
honest `recovered`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from tests.conftest import WAIT, join_json

StartGateway = Callable[..., Awaitable[TestClient]]


async def test_resume_after_an_offset_replays_exactly_what_was_missed(client: TestClient) -> None:
    """Guards against a reconnecting client that misses messages or sees them twice."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    seen = (await alice.request("send", room="lobby", text="before"))["offset"]
    await bob.expect("message", text="before")
    await bob.ws.close()
    missed = [(await alice.request("send", room="lobby", text=f"m{i}"))["offset"] for i in range(5)]
    bob = await join_json(client, "bob", since=seen, session=bob.welcome["session"])
    assert bob.subscribed["recovered"] is True
    assert bob.subscribed["offset"] == missed[-1]
    replay = [await bob.expect("message") for _ in range(5)]
    assert [m["offset"] for m in replay] == missed
    await alice.send(type="send", room="lobby", text="live")
    live = await bob.expect("message")
    assert live["text"] == "live"


async def test_resumes_while_messages_flow_have_no_gap_and_no_duplicate(
    gateway: StartGateway,
) -> None:
    """Guards against the race between reading the replay and the live stream.

    Joiners resume at different points while a flood is being published and
    dispatched, so some replays overlap messages still on their way live.
    """
    client = await gateway(rate_per_second=0)
    alice = await join_json(client, "alice")
    await alice.send(type="send", room="lobby", text="-1")
    seen = [await alice.expect("message")]  # messages alice saw, to resume after
    total, joiners = 300, 12

    async def flood() -> None:
        for i in range(total):
            await alice.send(type="send", room="lobby", text=str(i))
            if i % 25 == 0:
                seen.append(await alice.expect("message"))

    async def resume(n: int) -> None:
        await asyncio.sleep(0)
        since = seen[-1]
        peer = await join_json(client, f"joiner{n}", since=since["offset"])
        assert peer.subscribed["recovered"] is True
        texts = []
        async with asyncio.timeout(WAIT):
            while not texts or texts[-1] != str(total - 1):
                texts.append((await peer.expect("message"))["text"])
        after = int(since["text"]) + 1
        assert texts == [str(i) for i in range(after, total)], f"joiner{n} after {after}"

    flooding = asyncio.create_task(flood())
    await asyncio.gather(*(resume(n) for n in range(joiners)))
    await flooding


async def test_an_unknown_offset_is_not_recovered_and_gets_the_newest(
    gateway: StartGateway,
) -> None:
    """Guards against resuming at the wrong place after the backend lost its history."""
    client = await gateway(replay_limit=3)
    alice = await join_json(client, "alice")
    for i in range(5):
        await alice.request("send", room="lobby", text=f"m{i}")
    bob = await join_json(client, "bob", since="ffffffff-2")
    assert bob.subscribed["recovered"] is False
    texts = [(await bob.expect("message"))["text"] for _ in range(3)]
    assert texts == ["m2", "m3", "m4"]


async def test_a_trimmed_offset_is_not_recovered(gateway: StartGateway) -> None:
    """Guards against claiming a full replay when the history was trimmed past the offset.

    History keeps at least `history_size` messages (Redis trims whole stream nodes, so
    it may keep more); enough are sent that the first ones are gone on either broker.
    """
    client = await gateway(history_size=5, replay_limit=5, rate_per_second=0)
    alice = await join_json(client, "alice")
    total = 300
    for i in range(total):
        await alice.send(type="send", room="lobby", text=f"m{i}")
    offsets = [(await alice.expect("ack"))["offset"] for _ in range(total)]
    bob = await join_json(client, "bob", since=offsets[1])
    assert bob.subscribed["recovered"] is False
    texts = [(await bob.expect("message"))["text"] for _ in range(5)]
    assert texts == [f"m{i}" for i in range(total - 5, total)]
    history = await alice.request("history", room="lobby", limit=100)
    assert 5 <= len(history["messages"]) <= 100
    carol = await join_json(client, "carol", since=offsets[-3])
    assert carol.subscribed["recovered"] is True
    assert [(await carol.expect("message"))["text"] for _ in range(2)] == ["m298", "m299"]


async def test_join_frame_with_since_resumes_too(client: TestClient) -> None:
    """Guards against `since` working only in the URL."""
    alice = await join_json(client, "alice", room="dev")
    seen = (await alice.request("send", room="dev", text="old"))["offset"]
    await alice.request("send", room="dev", text="new")
    bob = await join_json(client, "bob")
    answer = await bob.request("join", room="dev", since=seen)
    assert answer["type"] == "subscribed" and answer["recovered"] is True
    assert (await bob.expect("message"))["text"] == "new"
