"""A node that was frozen (SIGSTOP: a VM stall, a long GC) and wakes (SIGCONT).

Two real gateway processes on the suite's redis-server. While one is frozen past the
presence timeout the other reaps it and announces its members' leaves. Once it runs
again, each of its connections must end up closed (the client resumes elsewhere) or a
member that everyone sees: never connected but invisible; and every message acked to
anyone reaches every client of the room, live or through its resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis

from gateway.broker.redis.keys import Keys
from tests.conftest import WAIT, JsonPeer, poll_until
from tests.plugins.gateway_nodes import connect
from tests.plugins.redis import REDIS_SERVER, RedisBackend
from tooling.gateway import GatewayProcess

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs a real redis-server")

PRESENCE_TIMEOUT = 1.5
SETTLE = 15.0  # seconds a woken node's connections have to end up visible or closed
SLEEPERS = ("s0", "s1", "s2")  # the frozen node's clients
WATCHERS = ("w0", "w1")  # the other node's


@dataclass
class TwoNodes:
    """The node to freeze, the one that stays awake, and a look at the first's heartbeat."""

    frozen: GatewayProcess
    awake: GatewayProcess
    redis: redis.Redis
    alive_key: str

    def frozen_has_heartbeat(self) -> bool:
        return bool(self.redis.exists(self.alive_key))


@pytest.fixture(params=["subscription-kept", "subscription-renewed"])
def two_nodes(redis_backend: RedisBackend, request: pytest.FixtureRequest) -> Iterator[TwoNodes]:
    """Two gateway processes on the suite's redis-server, a short presence timeout;
    with a short probe interval the frozen node finds its subscription deaf when it
    wakes and makes a new one (what it had buffered is dropped), else it reads on."""
    assert redis_backend.server is not None
    prefix = redis_backend.new_prefix()
    probe = "0.2" if request.param == "subscription-renewed" else "5"
    args = ("--redis-url", redis_backend.server.url, "--redis-prefix", prefix,
            "--presence-timeout", str(PRESENCE_TIMEOUT), "--probe-interval", probe,
            "--log-level", "INFO")  # fmt: skip
    nodes = TwoNodes(
        GatewayProcess(None, *args, "--node-id", "f0"),
        GatewayProcess(None, *args, "--node-id", "f1"),
        redis_backend.client(),
        Keys(prefix).node("f0") + ":alive",
    )
    try:
        nodes.frozen.start()
        nodes.awake.start()
        yield nodes
    finally:
        nodes.frozen.close()
        nodes.awake.close()


async def members(peer: JsonPeer) -> list[str]:
    """The lobby's members as `peer`'s node tells them."""
    answer = await peer.request("who", room="lobby")
    assert answer["type"] == "members", answer
    names: list[str] = answer["members"]
    return names


def offsets(peer: JsonPeer) -> list[str]:
    """The offsets of the lobby messages `peer` received, in order."""
    return [f["offset"] for f in peer.frames if f.get("type") == "message"]


def invisible(shown: set[str], open_: set[str], interloper: JsonPeer) -> list[str]:
    """The woken node's open connections that nobody sees as theirs: absent from `who`,
    or holding the name the interloper took while the node was frozen."""
    taken = set() if interloper.ws.closed else {"s2"}
    return sorted((open_ - shown) | (open_ & taken))


async def until_visible_or_closed(
    watcher: JsonPeer,
    readers: dict[str, asyncio.Task[Any]],
    interloper: JsonPeer,
) -> set[str]:
    """Wait (at most SETTLE seconds) until each sleeper is closed or its name's, in
    `who` on the watcher's node; the names still open."""
    deadline = time.monotonic() + SETTLE
    while True:
        shown = set(await members(watcher))
        open_ = {name for name, reader in readers.items() if not reader.done()}
        lost = invisible(shown, open_, interloper)
        if not lost:
            return open_
        assert time.monotonic() < deadline, f"connected but invisible: {lost}"
        await asyncio.sleep(0.1)  # a bounded poll: `who` has no event to wait on


async def received_all(peer: JsonPeer, wanted: set[str], reader: asyncio.Task[Any] | None) -> None:
    """Wait until `peer` has every offset in `wanted` (its reader appends its frames)."""
    deadline = time.monotonic() + WAIT
    while not wanted <= set(offsets(peer)):
        missing = sorted(wanted - set(offsets(peer)))
        assert time.monotonic() < deadline, f"{peer.welcome['name']} lacks {missing}"
        if reader is None:
            await peer.recv(timeout=max(deadline - time.monotonic(), 0.01))
        else:
            await asyncio.sleep(0.05)  # its reader task receives


def members_seen(peer: JsonPeer) -> set[str]:
    """The lobby's members as `peer` learnt them: its `subscribed`, then each event."""
    seen = set(peer.subscribed["members"])
    for frame in peer.frames:
        if frame.get("type") == "presence" and frame.get("room") == "lobby":
            (seen.add if frame["event"] == "join" else seen.discard)(frame["name"])
    return seen


async def until_seen(peer: JsonPeer, expected: set[str]) -> None:
    """Wait until `peer`'s joins and leaves add up to `expected` (at most WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while members_seen(peer) != expected:
        left = deadline - time.monotonic()
        assert left > 0, f"{peer.welcome['name']} sees {sorted(members_seen(peer))}"
        with contextlib.suppress(TimeoutError):
            await peer.recv(timeout=left)


async def send_around(sender: JsonPeer, sleeper: JsonPeer) -> set[str]:
    """Messages sent while the frozen node wakes, the offsets acked: three from the
    other node and one to the frozen node, read and answered once it runs (its ack,
    if it comes, is looked for later)."""
    acked = set()
    for i in range(3):
        acked.add((await sender.request("send", room="lobby", text=f"during {i}"))["offset"])
    await sleeper.send(type="send", room="lobby", text="queued", id="q", ref="q")
    return acked


@pytest.mark.parametrize("pause", ["past-the-timeout", "just-past-its-heartbeat"])
async def test_a_woken_node_leaves_no_connection_invisible_and_loses_nothing(
    two_nodes: TwoNodes, pause: str
) -> None:
    """Guards against a node that was frozen and, once it runs again, serves connections
    nobody sees in `who` (reaped, or their name taken by another meanwhile), or loses
    a message acked around it. Frozen past the timeout, it is reaped first; frozen just
    until its heartbeat expired, its name is taken before any reaper came by."""
    frozen, awake = two_nodes.frozen, two_nodes.awake
    async with aiohttp.ClientSession() as http:
        sleepers = {name: await connect(http, frozen, name) for name in SLEEPERS}
        quitter = await connect(http, frozen, "q0")  # it leaves while its node is frozen
        sender, asker = [await connect(http, awake, name) for name in WATCHERS]
        deadline = time.monotonic() + WAIT
        while set(await members(asker)) != {*SLEEPERS, *WATCHERS, "q0"}:
            assert time.monotonic() < deadline, "the joins never showed"
            await asyncio.sleep(0.05)
        acked = {(await sleepers["s0"].request("send", room="lobby", text="before"))["offset"]}
        for peer in [*sleepers.values(), sender, asker]:
            await received_all(peer, acked, None)  # so each has an offset to resume after

        frozen.send_signal(signal.SIGSTOP)
        quitting = asyncio.create_task(quitter.ws.close())  # its node answers once it wakes
        try:
            if pause == "past-the-timeout":
                left: set[str] = set()
                while not set(SLEEPERS) <= left:  # reaped: each leave announced
                    frame = await sender.expect("presence", event="leave", timeout=4 * WAIT)
                    left.add(frame["name"])
            else:
                await poll_until(lambda: not two_nodes.frozen_has_heartbeat(), 2 * WAIT)
            # A reaped member's name is free, and so is a name whose node's heartbeat
            # expired: someone takes it meanwhile.
            interloper = await connect(http, awake, "s2")
            if pause == "past-the-timeout":  # else it wakes at once, before any reaper
                acked |= await send_around(sender, sleepers["s1"])
        finally:
            frozen.send_signal(signal.SIGCONT)
        if pause != "past-the-timeout":
            acked |= await send_around(sender, sleepers["s1"])

        readers = {name: asyncio.create_task(peer.close_code(timeout=4 * SETTLE))
                   for name, peer in sleepers.items()}  # fmt: skip
        try:
            still_open = await until_visible_or_closed(asker, readers, interloper)
            if "s1" in still_open:  # it answers what it read once it woke
                await poll_until(lambda: any(f.get("ref") == "q" for f in sleepers["s1"].frames))
            queued = next((f for f in sleepers["s1"].frames if f.get("ref") == "q"), None)
            if queued is not None and queued["type"] == "ack":
                acked.add(queued["offset"])
            marker = await sender.request("send", room="lobby", text="marker")
            acked.add(marker["offset"])
            for name, peer in sleepers.items():
                if name in still_open:
                    await received_all(peer, acked, readers[name])
                    assert len(offsets(peer)) == len(set(offsets(peer))), f"{name}: twice"
            # Still so once the marker went round: not a passing state.
            now_open = {name for name, reader in readers.items() if not reader.done()}
            assert now_open == still_open, "a connection closed late"
            assert not invisible(set(await members(asker)), now_open, interloper)
            assert "s2" not in still_open  # the interloper has the name: s2 was closed,
            assert readers["s2"].result() == 4000  # as taken over (not to come back as s2)
            await asyncio.wait_for(quitting, WAIT)
            connected = {*WATCHERS, "s2", *still_open}  # s2: the interloper
            for name in set(SLEEPERS) - still_open:
                seen = offsets(sleepers[name])
                resumed = f"{name}-back" if name == "s2" else name  # the interloper holds s2
                connected.add(resumed)
                session = {"session": sleepers[name].welcome["session"]} if name == resumed else {}
                back = await connect(http, awake, resumed, since=seen[-1], **session)
                assert back.subscribed["recovered"], back.subscribed
                await received_all(back, acked - set(seen), None)
            for peer in (sender, asker):
                await received_all(peer, acked, None)
            # Who is there is who is connected (the quitter left no ghost), and
            # everyone's joins and leaves add up to it: none missed a join.
            deadline = time.monotonic() + WAIT
            while (shown := set(await members(asker))) != connected:
                assert time.monotonic() < deadline, f"who says {sorted(shown)}"
                await asyncio.sleep(0.05)  # a bounded poll: the quitter's leave may lag
            for peer in (sender, asker):
                await until_seen(peer, connected)
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)
