"""Real node processes on one Redis: what a kill -9 leaves behind is cleaned up once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.auth import mint
from gateway.broker.redis.keys import Keys
from tests.conftest import JSON_PROTOCOL, WAIT, JsonPeer, poll_until
from tests.plugins.gateway_nodes import connect
from tests.plugins.redis import REDIS_SERVER, RedisBackend, name_holders
from tooling.gateway import GatewayProcess

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs a real redis-server")


@pytest.fixture
def nodes(redis_backend: RedisBackend) -> Iterator[list[GatewayProcess]]:
    """Three gateway processes on the suite's redis-server, with a short presence timeout."""
    assert redis_backend.server is not None
    prefix = redis_backend.new_prefix()
    started = []
    try:
        for i in range(3):
            started.append(
                GatewayProcess(
                    None,
                    "--redis-url", redis_backend.server.url, "--redis-prefix", prefix,
                    "--node-id", f"p{i}", "--presence-timeout", "1.5",
                ).start()
            )  # fmt: skip
        yield started
    finally:
        for node in started:
            node.close()


async def test_kill_9_of_a_node_sends_each_leave_once(nodes: list[GatewayProcess]) -> None:
    """Guards against a crashed node's users staying online forever (Centrifugo let them
    expire silently), and against every surviving node announcing the same leave."""
    async with aiohttp.ClientSession() as http:
        doomed = await connect(http, nodes[0], "doomed")
        watchers = [await connect(http, nodes[i], f"w{i}") for i in (1, 2)]
        for watcher in watchers:
            await watcher.expect("presence", event="join", name="w2")
        ack = await doomed.request("send", room="lobby", text="last words")
        nodes[0].kill()
        for watcher in watchers:
            said = await watcher.expect("message", text="last words")
            assert said["offset"] == ack["offset"]  # acked before the crash: delivered
            await watcher.expect("presence", event="leave", name="doomed", timeout=8)
        await watchers[0].send(type="send", room="lobby", text="marker")
        for watcher in watchers:
            await watcher.expect("message", text="marker")
            assert [f["name"] for f in watcher.frames if f.get("event") == "leave"] == ["doomed"]
        assert (await watchers[1].request("who", room="lobby"))["members"] == ["w1", "w2"]
        back = await connect(http, nodes[1], "doomed")  # its name was freed as well
        assert back.welcome["node"] == "p1"


async def test_a_node_that_stalled_past_the_timeout_comes_back(
    nodes: list[GatewayProcess],
) -> None:
    """Guards against a node that was reaped while merely stalled (SIGSTOP) and, once it
    runs again, keeps serving users nobody can see or whose names others can take."""
    async with aiohttp.ClientSession() as http:
        sleeper = await connect(http, nodes[0], "sleeper")
        watcher = await connect(http, nodes[1], "watcher")
        nodes[0].send_signal(signal.SIGSTOP)
        try:
            await watcher.expect("presence", event="leave", name="sleeper", timeout=8)
        finally:
            nodes[0].send_signal(signal.SIGCONT)
        await watcher.expect("presence", event="join", name="sleeper", timeout=8)
        assert (await watcher.request("who", room="lobby"))["members"] == ["sleeper", "watcher"]
        ws = await http.ws_connect(
            nodes[2].url, params={"name": "sleeper"}, protocols=(JSON_PROTOCOL,)
        )
        assert (await JsonPeer(ws).recv())["code"] == "name_taken"
        await sleeper.send(type="send", room="lobby", text="i am back")
        await watcher.expect("message", text="i am back")


async def test_kill_9_keeps_a_user_who_is_also_on_another_node(
    redis_backend: RedisBackend,
) -> None:
    """Guards against the reaper of a crashed node removing an authenticated user's
    connections on the other nodes (their name, their presence), or leaving the dead
    node's share of the name behind for ever."""
    assert redis_backend.server is not None
    prefix = redis_backend.new_prefix()
    secret = "a-secret-for-the-reaper-test-of-32-bytes-or-more"
    args = ("--redis-url", redis_backend.server.url, "--redis-prefix", prefix,
            "--presence-timeout", "1.5", "--jwt-secret", secret)  # fmt: skip
    nodes = [GatewayProcess(None, *args, "--node-id", f"p{i}") for i in range(2)]
    redis = redis_backend.client()
    name_hash = Keys(prefix).name("alice")

    def holders() -> list[bytes]:
        return name_holders(redis, name_hash)

    try:
        for node in nodes:
            node.start()
        async with aiohttp.ClientSession() as http:
            bob = await connect(http, nodes[1], "bob", token=mint(secret, "bob", 60))
            alice = [
                await connect(http, node, "alice", token=mint(secret, "alice", 60))
                for node in nodes
            ]
            await bob.expect("presence", event="join", name="alice")
            assert holders() == [b"p0", b"p1"]
            nodes[0].kill()
            await poll_until(lambda: not redis.sismember(f"{prefix}nodes", "p0"), 8)  # reaped
            assert holders() == [b"p1"]
            await bob.request("dm", to="alice", text="are you there")
            await alice[1].expect("dm", text="are you there")
            assert (await bob.request("who", room="lobby"))["members"] == ["alice", "bob"]
            await alice[1].ws.close()
            await bob.expect("presence", event="leave", name="alice")
            assert [f["event"] for f in bob.frames if f.get("name") == "alice"] == [
                "join",
                "leave",
            ]
            await poll_until(lambda: not redis.exists(name_hash))  # released after the leave
    finally:
        for node in nodes:
            node.close()


async def test_a_node_restarting_refuses_connections_until_it_serves(
    redis_backend: RedisBackend,
) -> None:
    """Guards against a restarted node whose port accepts connections while it starts:
    it waits out its former run's hand-over there, then reaps it. A user the balancer
    sent to it meanwhile was held unserved, not present anywhere, so the reap announced
    its leave, and serving it at last its join: the rolling-restart test's flake. A
    refused connection makes the balancer (here the test, doing what nginx does) try
    the next node, where the user is present within the grace period: no leave, no join.
    """
    assert redis_backend.server is not None
    prefix = redis_backend.new_prefix()
    args = ("--redis-url", redis_backend.server.url, "--redis-prefix", prefix,
            "--grace-period", "4", "--log-level", "INFO")  # fmt: skip
    restarted = GatewayProcess(None, *args, "--node-id", "h0")
    other = GatewayProcess(None, *args, "--node-id", "h1")

    async def balanced(http: aiohttp.ClientSession, session: str) -> JsonPeer:
        """`mover` through a balancer: the restarted node first, the next on a refusal."""
        for node in (restarted, other):
            try:
                return await connect(http, node, "mover", offers=(f"chat.session.{session}",))
            except aiohttp.ClientConnectorError:
                refusals.append(node.port)
        raise AssertionError("no node took the connection")

    refusals: list[int] = []
    try:
        restarted.start()
        other.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http:
            watcher = await connect(http, other, "watcher")
            mover = await connect(http, restarted, "mover")
            await watcher.expect("presence", event="join", name="mover")
            await asyncio.to_thread(restarted.stop)  # SIGTERM: 1001, hand-over, exit 0
            assert await mover.close_code() == 1001
            restarted.launch()  # the same id and port
            await poll_until(lambda: "handed over; waiting" in restarted.log())
            moved = await balanced(http, mover.welcome["session"])
            took = f"the starting node took the connection (welcome from {moved.welcome['node']})"
            assert refusals == [restarted.port], f"{took}:\n{restarted.log()}"
            assert moved.welcome["node"] == "h1"
            await asyncio.to_thread(restarted.wait_serving)  # its former run is reaped
            assert f"on http://127.0.0.1:{restarted.port}" in restarted.log()
            await moved.request("send", room="lobby", text="marker")
            await watcher.expect("message", text="marker")
            seen = [(f["event"], f["name"]) for f in watcher.frames if f["type"] == "presence"]
            assert seen == [("join", "watcher"), ("join", "mover")]
            assert (await watcher.request("who", room="lobby"))["members"] == ["mover", "watcher"]
            await moved.ws.close()
            await watcher.ws.close()
    finally:
        for node in (restarted, other):
            node.close()
