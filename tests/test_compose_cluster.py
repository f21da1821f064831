"""`docker compose --profile redis-cluster up`, run for real under podman-compose: six
Redis Cluster nodes joined by the one-shot redis-cluster-init, the three gateways on
`redis+cluster://`, nginx in front. Through the balancer two users chat on sharded
channels; the whole stack is stopped and started again with every node on a new
address (containers take all the old ones meanwhile): the init job introduces the
nodes again, the cluster is ok, the history is still there, and chat goes on; then
`down -v` leaves nothing. Skips where containers cannot run, unless
CHAT_TEST_COMPOSE=require (CI sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.compose_stack import GATEWAY_IMAGE, Stack, build_images, podman_or_skip
from tests.conftest import JSON_PROTOCOL, JsonPeer, PeerClosed
from tests.plugins.deploy import CLUSTER_INIT, CLUSTER_NODES, GATEWAYS
from tooling.ports import free_port

pytestmark = pytest.mark.timeout(1500)  # a fresh machine builds the images first
HEALTHY_WAIT = 120.0  # seconds from `up` until every service passes its health check
INIT_WAIT = 150.0  # seconds for the init job: it waits up to 60 s for nodes, 60 s for ok
SETTLE_WAIT = 30.0  # seconds a first handshake may be told "unavailable" (1011) at most
SEEDS = ",".join(f"{node}:6379" for node in CLUSTER_NODES[:3])
SERVICES = (*CLUSTER_NODES, *GATEWAYS, "nginx")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The compose project with the redis-cluster profile, up; `down -v` after."""
    podman = podman_or_skip()
    build_images()
    stack = Stack(
        podman,
        f"chatgw-cluster-{os.getpid()}",
        free_port(),
        profile="redis-cluster",
        env={"CHAT_REDIS_URL": f"redis+cluster://{SEEDS}"},
    )
    squatters = [f"{stack.project}-squatter{index}" for index in range(len(CLUSTER_NODES))]
    try:
        stack.compose("up", "-d")
        yield stack
    finally:
        print(stack.logs(CLUSTER_INIT, *GATEWAYS))  # shown when a test fails
        with contextlib.suppress(AssertionError):
            stack.podman_run("rm", "-f", "--ignore", *squatters)
        with contextlib.suppress(AssertionError):
            stack.compose("down", "-v", timeout=180)


def addresses(stack: Stack) -> list[str]:
    fields = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return [stack.podman_run("inspect", stack.container(n), "--format", fields).strip()
            for n in CLUSTER_NODES]  # fmt: skip


def redis_cli(stack: Stack, node: str, *command: str) -> str:
    return stack.podman_run("exec", stack.container(node), "redis-cli", *command)


async def join(http: aiohttp.ClientSession, stack: Stack, name: str) -> JsonPeer:
    """`name` in the lobby. A cluster just formed (its replicas still syncing) may answer
    a handshake `unavailable` (1011: try again later) for a moment, as the protocol
    allows: tried again, for SETTLE_WAIT at most; anything else fails at once."""
    deadline = asyncio.get_running_loop().time() + SETTLE_WAIT
    while True:
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{stack.port}/ws", params={"name": name}, protocols=(JSON_PROTOCOL,)
        )
        peer = JsonPeer(ws)
        try:
            peer.welcome = await peer.expect("welcome")
        except PeerClosed:
            if ws.close_code != 1011 or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)  # what "try again later" asks of a client
            continue
        peer.subscribed = await peer.expect("subscribed", room="lobby")
        return peer


async def chat(stack: Stack, text: str) -> list[dict[str, Any]]:
    """alice says `text` through the balancer, bob gets it; then the lobby's history."""
    async with aiohttp.ClientSession() as http:
        alice, bob = await join(http, stack, "alice"), await join(http, stack, "bob")
        ack = await alice.request("send", room="lobby", text=text)
        assert ack["type"] == "ack", ack
        await bob.expect("message", text=text, offset=ack["offset"])
        shard_lists = [redis_cli(stack, n, "pubsub", "shardchannels") for n in CLUSTER_NODES]
        assert any("chat:ch:room:{lobby}" in listed for listed in shard_lists), shard_lists
        for node in CLUSTER_NODES:
            assert "chat:ch:room:{lobby}" not in redis_cli(stack, node, "pubsub", "channels")
        history = await alice.request("history", room="lobby", limit=50)
    messages: list[dict[str, Any]] = history["messages"]
    return messages


async def test_the_redis_cluster_profile_chats_and_survives_new_addresses(
    stack: Stack,
) -> None:
    """Guards against a cluster profile that never joins its nodes, gateways left on the
    single Redis, rooms on the cluster-wide bus, and a stack that cannot come back after
    a stop (each node's nodes.conf names the old addresses: the cluster stayed `fail`
    until the init job met the nodes again)."""
    assert stack.wait_exited(CLUSTER_INIT, INIT_WAIT) == 0, stack.logs(CLUSTER_INIT)
    stack.wait_healthy(SERVICES, HEALTHY_WAIT)
    assert "redis cluster redis-node-1:6379" in stack.logs("gateway1")
    await chat(stack, "before the restart")

    before = addresses(stack)
    stack.compose("stop", timeout=180)
    # Take every address the nodes had: each comes back on one no node had (Redis
    # heals by itself when an old address now leads to another node of the cluster).
    network = f"{stack.project}_default"
    for index, address in enumerate(before):
        stack.podman_run("run", "-d", "--rm", "--network", network, "--ip", address,
                         "--name", f"{stack.project}-squatter{index}", "--entrypoint",
                         "sleep", GATEWAY_IMAGE, "600")  # fmt: skip
    stack.compose("up", "-d")
    assert stack.wait_exited(CLUSTER_INIT, INIT_WAIT) == 0, stack.logs(CLUSTER_INIT)
    assert not set(addresses(stack)) & set(before)
    assert "introducing its nodes again" in stack.logs(CLUSTER_INIT)
    assert "cluster_state:ok" in redis_cli(stack, "redis-node-1", "cluster", "info")
    stack.wait_healthy(SERVICES, HEALTHY_WAIT)
    texts = [m["text"] for m in await chat(stack, "after the restart")]
    assert texts[-2:] == ["before the restart", "after the restart"], texts
