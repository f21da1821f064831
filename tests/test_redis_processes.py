"""Real node processes on one Redis: what a kill -9 leaves behind is cleaned up once."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import JSON_PROTOCOL, JsonPeer
from tests.processes import GatewayProcess
from tests.redis_backend import REDIS_SERVER, RedisBackend

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


async def connect(http: aiohttp.ClientSession, node: GatewayProcess, name: str) -> JsonPeer:
    ws = await http.ws_connect(node.url, params={"name": name}, protocols=(JSON_PROTOCOL,))
    peer = JsonPeer(ws)
    peer.welcome = await peer.expect("welcome")
    peer.subscribed = await peer.expect("subscribed")
    return peer


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
