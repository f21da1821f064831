"""Budgets (issue 19, finding 3 and the churn of finding 8), through real clients against
a real node on each broker: one user on many connections is limited as one; a recipient
flooded with direct messages by many senders is protected (the senders are refused with
`rate_limited`) instead of being cut off as a slow reader; connect/disconnect churn from
one address is bounded in the presence lines it makes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from gateway.auth import mint
from gateway.ratelimit import KeyedBuckets
from tests.conftest import (
    JSON_PROTOCOL,
    WAIT,
    JsonPeer,
    join_json,
    join_text,
    poll_until,
    read_metric,
)
from tooling.rawsocket import RawWebSocket

StartGateway = Callable[..., Awaitable[TestClient]]
SECRET = "a-test-secret-of-at-least-32-bytes-long-for-budgets"


async def rate_limited(client: TestClient, limit: str) -> float:
    return await read_metric(client, f'chat_rate_limited_total{{limit="{limit}"}}')


async def answers(peer: JsonPeer, refs: list[str]) -> list[dict[str, Any]]:
    """The answers (ack or error) to the frames sent with `refs`, in that order."""
    found: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(WAIT):
        while len(found) < len(refs):
            frame = await peer.until(lambda f: f.get("ref") in refs and f["ref"] not in found)
            found[frame["ref"]] = frame
    return [found[ref] for ref in refs]


# one user, many connections ------------------------------------------------------------


async def test_one_user_on_many_connections_is_limited_as_one(gateway: StartGateway) -> None:
    """Guards against a bucket per connection: one token on 30 connections had 600 sends
    acked in 1.4 s. Five connections of alice share one burst of 5; bob keeps his own."""
    client = await gateway(jwt_secret=SECRET, rate_per_second=0.01, rate_burst=5, rate_strikes=50)
    token = mint(SECRET, "alice", 60)
    alices = []
    for _ in range(5):
        ws = await client.ws_connect("/ws", params={"token": token}, protocols=(JSON_PROTOCOL,))
        peer = JsonPeer(ws)
        await peer.expect("subscribed", room="lobby")
        alices.append(peer)
    results = []
    for round_ in range(2):  # two messages (a send, a dm) from each connection
        for i, peer in enumerate(alices):
            if round_ == 0:
                answer = await peer.request("send", room="lobby", text=f"from {i}")
            else:
                answer = await peer.request("dm", to="alice", text=f"dm from {i}")
            results.append((answer["type"], answer.get("code")))
    assert results.count(("ack", None)) == 5, results
    assert results.count(("error", "rate_limited")) == 5, results
    assert await rate_limited(client, "user") == 5
    bob_ws = await client.ws_connect(
        "/ws", params={"token": mint(SECRET, "bob", 60)}, protocols=(JSON_PROTOCOL,)
    )
    bob = JsonPeer(bob_ws)
    await bob.expect("subscribed", room="lobby")
    assert (await bob.request("send", room="lobby", text="bob's own"))["type"] == "ack"


# many senders, one recipient -----------------------------------------------------------


class SlowLink:
    """A JSON connection read at `rate` bytes a second (a slow link): its frames are
    collected as they arrive; `closed` once the server ended the connection."""

    def __init__(self, raw: RawWebSocket, rate: float) -> None:
        self.raw = raw
        self.rate = rate
        self.frames: list[tuple[int, bytes]] = []
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(self.raw.sock, 4096)
            except ConnectionError:
                data = b""
            if not data:
                self.closed.set()
                return
            self.raw.buffer += data
            self.frames += self.raw.frames()
            if any(opcode == 8 for opcode, _ in self.frames):
                self.closed.set()
            await asyncio.sleep(len(data) / self.rate)  # the link's speed, not a wait

    def texts(self, needle: bytes) -> int:
        return sum(1 for opcode, data in self.frames if opcode == 1 and needle in data)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.raw.close()


async def test_forty_senders_cannot_cut_off_a_recipient_on_a_slow_link(
    gateway: StartGateway,
) -> None:
    """Guards against knocking a user offline with direct messages: forty senders, each
    within its own rate (8 a second), send 4,000-character DMs to one reader on a link
    of about 100 KB/s. Without a budget per recipient that is about 1.3 MB/s at it and it
    is cut off as a slow consumer within seconds; with it (the defaults: 5 a second,
    burst 20, cluster-wide) the senders are refused with a rate_limited that names the
    recipient, and the reader stays connected and answers. The node's send queue is
    200 KB here: on loopback the kernel's buffers take megabytes before it fills."""
    client = await gateway(rate_strikes=1000, send_queue_limit=200_000)
    raw = await RawWebSocket.connect(
        client.host, client.port, "name=slow&room=lobby", JSON_PROTOCOL
    )
    link = SlowLink(raw, rate=100_000)
    try:
        senders = [await join_json(client, f"s{i:02d}", room="dm-flood") for i in range(40)]
        text = "x" * 4000
        refs_of: dict[int, list[str]] = {i: [] for i in range(len(senders))}
        started = time.monotonic()
        for tick in range(24):  # three seconds at 8 a second, each sender
            for i, sender in enumerate(senders):
                ref = f"d{tick}"
                await sender.send(type="dm", to="slow", text=text, ref=ref)
                refs_of[i].append(ref)
            await asyncio.sleep(0.125)  # the senders' pace, not a wait
        replies = [await answers(s, refs_of[i]) for i, s in enumerate(senders)]
        elapsed = time.monotonic() - started
        flat = [r for rs in replies for r in rs]
        acked = [r for r in flat if r["type"] == "ack"]
        refused = [r for r in flat if r["type"] == "error"]
        assert {r["code"] for r in refused} == {"rate_limited"}, refused[:3]
        assert refused[0]["message"].startswith("slow is getting too many direct messages")
        assert len(acked) <= 20 + 5 * (elapsed + 1), (len(acked), elapsed)
        assert await rate_limited(client, "recipient") == len(refused)
        assert await read_metric(client, "chat_slow_consumers_closed_total") == 0
        assert not link.closed.is_set(), "the recipient was cut off"
        # Still there: it answers a ping, after everything it was sent.
        await raw.send_frame(1, b'{"type":"ping","ref":"alive"}')
        await poll_until(lambda: link.closed.is_set() or link.texts(b'"ref":"alive"') > 0)
        assert not link.closed.is_set(), "the recipient was cut off"
        assert link.texts(b'"type":"dm"') == len(acked)
    finally:
        await link.stop()


async def test_a_refused_dm_is_not_delivered_and_a_later_one_is(gateway: StartGateway) -> None:
    """Guards against the recipient budget refusing without saying whom it protects, or
    delivering what it refused; other recipients keep their own budget."""
    client = await gateway(dm_recipient_rate=0.01, dm_recipient_burst=2)
    bob = await join_json(client, "bob")
    carol = await join_json(client, "carol")
    alice = await join_json(client, "alice")
    for i in range(2):
        assert (await alice.request("dm", to="bob", text=f"ok {i}"))["type"] == "ack"
    refused = await alice.request("dm", to="bob", text="too many")
    assert refused["code"] == "rate_limited", refused
    assert refused["message"].startswith("bob is getting too many direct messages: not sent")
    assert (await alice.request("dm", to="carol", text="hi carol"))["type"] == "ack"
    await carol.expect("dm", text="hi carol")
    assert (await bob.request("ping"))["type"] == "pong"
    assert [f["text"] for f in bob.frames if f["type"] == "dm"] == ["ok 0", "ok 1"]


# joins and churn -------------------------------------------------------------------------


async def churn_once(client: TestClient, name: str) -> str | None:
    """Connect as `name` and close at once; the refusal's code, if refused."""
    ws = await client.ws_connect("/ws", params={"name": name}, protocols=(JSON_PROTOCOL,))
    try:
        async with asyncio.timeout(WAIT):
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"closed without an answer: {msg.type}")
                frame = json.loads(msg.data)
                if frame["type"] == "subscribed":
                    return None
                if frame["type"] == "error":
                    assert ws.close_code in (None, 1008)
                    return str(frame["code"])
    finally:
        await ws.close()


async def test_churn_from_one_address_is_bounded_in_presence_lines(
    gateway: StartGateway,
) -> None:
    """Guards against connect/disconnect churn flooding a room: without auth 1,248 cycles
    in 4 s made 2,496 presence lines to every member. With a budget of 10 joins and 2 a
    second per address, 60 cycles make at most that many joins (and as many leaves);
    the rest are refused rate_limited before any welcome."""
    client = await gateway(join_rate_per_ip=2, join_burst_per_ip=10)
    watcher = await join_json(client, "watcher")
    started = time.monotonic()
    refusals = [await churn_once(client, f"churn{i}") for i in range(60)]
    elapsed = time.monotonic() - started
    admitted = refusals.count(None)
    assert set(refusals) == {None, "rate_limited"}, refusals
    assert admitted <= 9 + 2 * (elapsed + 1), (admitted, elapsed)  # the watcher took one
    assert await rate_limited(client, "address") == refusals.count("rate_limited")
    # Every join the watcher saw has its leave; nothing from the refused ones.
    async with asyncio.timeout(WAIT):
        while True:
            presence = [
                f for f in watcher.frames if f["type"] == "presence" and f["name"] != "watcher"
            ]
            joins = [f["name"] for f in presence if f["event"] == "join"]
            leaves = [f["name"] for f in presence if f["event"] == "leave"]
            if len(joins) == admitted and sorted(leaves) == sorted(joins):
                break
            await watcher.until(lambda f: f["type"] == "presence")
    assert len(presence) == 2 * admitted < 60


async def test_joins_of_one_connection_are_bounded_and_it_stays(gateway: StartGateway) -> None:
    """Guards against one connection cycling through rooms to spam them with presence
    lines: past its join burst a join is refused rate_limited, the connection stays in
    its rooms, and a text-mode /join refused so stays in its room."""
    client = await gateway(join_rate=0.01, join_burst=3)
    peer = await join_json(client, "hopper")  # the first room is the first join
    for room in ("r1", "r2"):
        assert (await peer.request("join", room=room))["type"] == "subscribed"
    refused = await peer.request("join", room="r3")
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert refused["message"].startswith("slow down: too many joins")
    assert (await peer.request("send", room="r2", text="still in"))["type"] == "ack"
    assert await rate_limited(client, "joins") == 1

    text = await join_text(client, "walker")
    for room in ("t1", "t2"):
        await text.say(f"/join {room}")
        await text.expect_line(f"* you are in {room}; members: walker")
    await text.say("/join t3")
    await text.expect_line("! slow down: too many joins; try again in ...")
    await text.say("/who")
    await text.expect_line("* members of t2: walker")


async def test_an_entry_that_announces_nothing_costs_nothing(gateway: StartGateway) -> None:
    """Guards against a reconnect storm being refused: a second connection of a name
    already present (auth: one user, several connections) announces no join and spends
    none of the address's budget."""
    client = await gateway(jwt_secret=SECRET, join_rate_per_ip=0.01, join_burst_per_ip=2)
    token = mint(SECRET, "tab", 60)
    for _ in range(6):
        ws = await client.ws_connect("/ws", params={"token": token}, protocols=(JSON_PROTOCOL,))
        await JsonPeer(ws).expect("subscribed", room="lobby")
    other = await client.ws_connect(
        "/ws", params={"token": mint(SECRET, "second", 60)}, protocols=(JSON_PROTOCOL,)
    )
    await JsonPeer(other).expect("subscribed", room="lobby")  # the second announced join
    third = await client.ws_connect(
        "/ws", params={"token": mint(SECRET, "third", 60)}, protocols=(JSON_PROTOCOL,)
    )
    error = await JsonPeer(third).expect("error")
    assert error["code"] == "rate_limited"
    assert error["message"].startswith("too many joins from your address")


def test_buckets_refilled_to_full_are_forgotten() -> None:
    """Guards against the per-user and per-address maps growing with every key ever seen."""
    now = [0.0]
    buckets = KeyedBuckets(rate=10, burst=20, clock=lambda: now[0])
    for i in range(1000):
        assert buckets.bucket(f"user{i}").take()
    assert len(buckets) == 1000
    now[0] = 2.5  # past the refill time (burst / rate): all full again
    assert buckets.bucket("fresh").take()
    assert len(buckets) == 1
