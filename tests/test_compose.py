"""`docker compose up`, run for real: docker-compose.yml under podman-compose.

Redis, three gateway containers and nginx, on images deploy/local-images.sh builds
(deploy/Dockerfile on a plain Debian bookworm, installed from a wheelhouse). Through
the balancer: a JSON and a text client on different nodes chat; one node container is
stopped (SIGTERM: its clients move to another node with no leave), another killed
(SIGKILL: its members leave once its heartbeat expires), Redis is restarted (sends are
refused, then taken again; nothing acked is lost); then `down -v` leaves nothing. The
figures go to test-artifacts/compose.json. Skips where containers cannot run, unless
CHAT_TEST_COMPOSE=require (CI sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.compose_stack import (
    GATEWAY_IMAGE,
    ROOT,
    SERVICES,
    Stack,
    build_images,
    podman_or_skip,
    run,
    run_status,
)
from tests.conftest import TextPeer
from tests.test_process import free_port
from tests.test_rolling_restart import LONG_WAIT, ROOM, ChatUser

pytestmark = pytest.mark.timeout(1500)  # a fresh machine builds the images first
HEALTHY_WAIT = 120.0  # seconds from `up` until every service passes its health check
PRESENCE_TIMEOUT = 15.0  # the compose nodes' --presence-timeout (the default)
MESSAGES = 20  # sent each way through the balancer before the faults
FIGURES = ROOT / "test-artifacts" / "compose.json"


@pytest.fixture(scope="module")
def images() -> tuple[str, float]:
    """podman, once deploy/local-images.sh has built every image; the seconds it took."""
    podman = podman_or_skip()
    return podman, build_images()


@pytest.fixture(scope="module")
def stack(images: tuple[str, float]) -> Iterator[tuple[Stack, dict[str, float]]]:
    """The compose project, up, every service healthy; `down -v` after."""
    podman, seconds = images
    figures = {"images_seconds": round(seconds, 1)}
    stack = Stack(podman, f"chatgw-test-{os.getpid()}", free_port())
    started = time.monotonic()
    stack.compose("up", "-d")
    try:
        stack.wait_healthy(SERVICES, HEALTHY_WAIT)
        figures["up_to_healthy_seconds"] = round(time.monotonic() - started, 1)
        yield stack, figures
    finally:
        with contextlib.suppress(AssertionError):
            stack.compose("down", "-v", timeout=180)


def test_the_image_checks_its_own_health_and_runs_as_a_user(images: tuple[str, float]) -> None:
    """Guards against an image whose HEALTHCHECK is lost (podman keeps it only in the
    docker format) or fails inside the image (no `python` on a plain Debian base), and
    against a node running as root."""
    podman, _ = images
    name = f"chatgw-image-test-{os.getpid()}"
    declared = json.loads(run([podman, "image", "inspect", GATEWAY_IMAGE]))[0]
    assert "/healthz" in " ".join(declared["Healthcheck"]["Test"])
    run([podman, "run", "-d", "--rm", "--name", name, GATEWAY_IMAGE])
    try:
        started = time.monotonic()
        while run_status([podman, "healthcheck", "run", name]) != 0:
            assert time.monotonic() - started < HEALTHY_WAIT, "the image's check never passed"
            time.sleep(0.5)  # between checks, bounded by HEALTHY_WAIT
        assert run([podman, "exec", name, "id", "-u"]).strip() == "10001"
    finally:
        run([podman, "rm", "-f", name])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def text_client(stack: Stack, http: aiohttp.ClientSession, name: str) -> TextPeer:
    """A text-mode client through the balancer, in the room."""
    ws = await http.ws_connect(f"{stack.url}/ws", params={"name": name, "room": ROOM})
    peer = TextPeer(ws)
    await peer.expect_line(f"* you are in {ROOM}; members: ...", timeout=LONG_WAIT)
    return peer


async def stored_offsets(user: ChatUser) -> set[str]:
    """The offset of every message in the room's history, paged back 100 at a time."""
    offsets: set[str] = set()
    before: dict[str, str] = {}
    for page in range(50):  # bounded: 5,000 messages, far more than the test sends
        frame = {"type": "history", "room": ROOM, "limit": 100, **before}
        messages = (await user.request(frame, f"history-{page}"))["messages"]
        offsets.update(m["offset"] for m in messages)
        if len(messages) < 100:
            return offsets
        before = {"before": messages[0]["offset"]}
    raise AssertionError("history does not end")


async def gateways_with(stack: Stack, mode: str) -> list[str]:
    return await asyncio.to_thread(stack.node_holding, mode)


async def test_the_compose_stack_chats_through_node_and_redis_faults(
    stack: tuple[Stack, dict[str, float]], http: aiohttp.ClientSession
) -> None:
    """Guards against a compose file or image that does not run (a wrong health check,
    a missing file, a root user, nginx not reaching the nodes), and against a deployment
    that loses a message or shows a false leave when a node or Redis goes away."""
    compose, figures = stack
    url = f"{compose.url}/ws"
    alice, bob = ChatUser(0, url, http), ChatUser(2, url, http)  # both come back at once
    users = [alice, bob]
    for user in users:
        user.start()
    try:
        for user in users:
            await user.until(user.up.is_set, "connection through the balancer")
        alice_node = alice.nodes[-1]  # the node ids are the service names
        assert alice_node in SERVICES, alice.nodes
        # The text client lands on another node than alice (nginx takes turns).
        carol = await text_client(compose, http, "carol")
        for _ in range(3):
            text_nodes = await gateways_with(compose, "text")
            if text_nodes != [alice_node]:
                break
            await carol.ws.close()
            carol = await text_client(compose, http, "carol")
        (carol_node,) = text_nodes
        assert carol_node != alice_node

        # Both ways through the balancer.
        for count in range(MESSAGES):
            await alice.send_until_acked(f"a{count}", f"from json {count}")
            await carol.expect_line(f"{alice.name}: from json {count}", timeout=LONG_WAIT)
            await carol.ws.send_str(f"from text {count}")
            await carol.expect_line("* sent", timeout=LONG_WAIT)
        await alice.until(lambda: len(alice.offsets) >= 2 * MESSAGES, "messages from carol")
        figures["messages_through_the_balancer"] = 2 * MESSAGES

        # SIGTERM alice's node: she moves to another node; nobody sees her leave.
        stop = asyncio.Event()
        chatter = asyncio.create_task(bob.chat(stop))
        moved_from = len(alice.nodes)
        started = time.monotonic()
        await asyncio.to_thread(
            compose.podman_run, "stop", "-t", "30", compose.container(alice_node)
        )
        await alice.until(lambda: len(alice.nodes) > moved_from and alice.up.is_set(), "move")
        figures["sigterm_move_seconds"] = round(time.monotonic() - started, 1)
        assert alice.close_codes[1001] >= 1, alice.close_codes
        bob_sent = len(bob.acked)
        await bob.until(lambda: len(bob.acked) >= bob_sent + 3, "sends after the move")
        stop.set()
        await asyncio.wait_for(chatter, LONG_WAIT)
        await alice.until(lambda: alice.has_received(set(bob.acked.values())), "bob's messages")
        leaves = [p["name"] for u in users for p in u.presence if p["event"] == "leave"]
        assert alice.name not in leaves, leaves

        # SIGKILL carol's node: alice and bob see carol leave once its heartbeat expires.
        started = time.monotonic()
        await asyncio.to_thread(
            compose.podman_run, "kill", "--signal", "KILL", compose.container(carol_node)
        )

        def carol_left(user: ChatUser) -> bool:
            return any(p["name"] == "carol" and p["event"] == "leave" for p in user.presence)

        await alice.until(lambda: carol_left(alice), "carol's leave")
        figures["sigkill_leave_seconds"] = round(time.monotonic() - started, 1)
        assert figures["sigkill_leave_seconds"] <= PRESENCE_TIMEOUT + LONG_WAIT / 2
        await alice.until(lambda: alice.up.is_set(), "a connection after the kill")

        # Restart Redis: sends are refused while it is down, then taken again.
        await asyncio.to_thread(compose.podman_run, "stop", compose.container("redis"))
        refused = 0
        async with asyncio.timeout(LONG_WAIT):
            while not refused:
                frame = {"type": "send", "room": ROOM, "text": "while redis is down"}
                answer = await alice.request(frame, f"down-{len(alice.offsets)}-{time.time()}")
                assert answer["type"] == "error", answer  # never acked while Redis is down
                refused += answer["code"] == "unavailable"
        figures["refused_while_redis_down"] = refused
        await asyncio.to_thread(compose.podman_run, "start", compose.container("redis"))
        started = time.monotonic()
        await alice.send_until_acked("after-redis", "redis is back")
        figures["redis_back_to_ack_seconds"] = round(time.monotonic() - started, 1)

        # Nothing acked is lost: every acked offset is in the room's history.
        acked = set(alice.acked.values()) | set(bob.acked.values())
        kept = await stored_offsets(alice)
        figures["acked_messages"] = len(acked) + MESSAGES  # with carol's, acked in text mode
        figures["lost"] = len(acked - kept)
        assert acked <= kept, sorted(acked - kept)
    finally:
        for user in users:
            await user.stop()
        FIGURES.parent.mkdir(exist_ok=True)
        FIGURES.write_text(json.dumps(figures, indent=2) + "\n")


def test_down_leaves_no_container_network_or_volume(stack: tuple[Stack, dict[str, float]]) -> None:
    """Guards against a `down -v` that leaves a container, network or volume behind."""
    compose, figures = stack
    started = time.monotonic()
    compose.compose("down", "-v", timeout=180)
    figures["down_seconds"] = round(time.monotonic() - started, 1)
    assert compose.leftovers() == {"containers": [], "networks": [], "volumes": []}
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
