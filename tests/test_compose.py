"""`docker compose up`, run for real: docker-compose.yml under podman-compose.

Redis, three gateway containers and nginx, on images deploy/local-images.sh builds
(deploy/Dockerfile on a plain Debian bookworm, installed from a wheelhouse). The nodes
see each client's address as nginx saw it, never one the client wrote in a header
(--trusted-proxies; the per-address limit is on). Through the balancer: a JSON and a
text client on different nodes chat; one node container is stopped (SIGTERM: its
clients move to another node with no leave), another killed (SIGKILL: its members
leave once its heartbeat expires), Redis is restarted (sends are refused, then taken
again; nothing acked is lost); then `down -v` leaves nothing. The figures go to
test-artifacts/compose.json. Skips where containers cannot run, unless
CHAT_TEST_COMPOSE=require (CI sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

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
from tests.plugins.chat_users import LONG_WAIT, ROOM, ChatUser
from tests.plugins.deploy import GATEWAYS
from tooling.ports import free_port

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
    try:
        stack.compose("up", "-d")
        stack.wait_healthy(SERVICES, HEALTHY_WAIT)
        figures["up_to_healthy_seconds"] = round(time.monotonic() - started, 1)
        yield stack, figures
    finally:
        with contextlib.suppress(AssertionError):
            stack.compose("down", "-v", timeout=180)


def test_the_image_checks_its_own_health_and_runs_as_a_user(images: tuple[str, float]) -> None:
    """Guards against an image whose HEALTHCHECK is lost (podman keeps it only in the
    docker format) or fails inside the image (no `python` on a plain Debian base),
    against a node running as root, and one that needs to write outside /tmp (the
    Kubernetes manifests mount its root read-only)."""
    podman, _ = images
    name = f"chatgw-image-test-{os.getpid()}"
    declared = json.loads(run([podman, "image", "inspect", GATEWAY_IMAGE]))[0]
    assert "/healthz" in " ".join(declared["Healthcheck"]["Test"])
    # As deploy/k8s runs it: read-only root, a writable /tmp, no capabilities.
    run([podman, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
         "--cap-drop", "ALL", GATEWAY_IMAGE])  # fmt: skip
    try:
        started = time.monotonic()
        while run_status([podman, "healthcheck", "run", name]) != 0:
            if time.monotonic() - started > HEALTHY_WAIT:
                logs = run([podman, "logs", name])
                raise AssertionError(f"the image's check never passed:\n{logs}")
            time.sleep(0.5)  # between checks, bounded by HEALTHY_WAIT
        assert run([podman, "exec", name, "id", "-u"]).strip() == "10001"
    finally:
        run([podman, "rm", "-f", name])


def test_the_nodes_see_the_client_nginx_saw_not_a_header_it_wrote(
    stack: tuple[Stack, dict[str, float]],
) -> None:
    """Guards against nodes that see nginx as every client (the per-address limit would
    cap them all together), and against one that believes a client's own
    X-Forwarded-For (a client could name any address, and dodge the limit)."""
    compose, _ = stack
    spoofed = "203.0.113.99"
    paths = [f"/no-such-page-{uuid.uuid4().hex}" for _ in range(3)]  # 404s, one per node
    for path in paths:
        request = urllib.request.Request(compose.url + path, headers={"X-Forwarded-For": spoofed})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)
        answer.value.close()  # its connection
        assert answer.value.code == 404
    seen = {line.split()[0] for path in paths for line in compose.requests("nginx", path)}
    assert len(seen) == 1, seen  # the address nginx got our connections from
    (client,) = seen
    for path in paths:
        (line,) = [line for name in GATEWAYS for line in compose.requests(name, path)]
        assert f": {client} " in line and spoofed not in line, line


async def text_client(stack: Stack, http: aiohttp.ClientSession, name: str) -> TextPeer:
    """A text-mode client through the balancer, in the room."""
    ws = await http.ws_connect(f"{stack.url}/ws", params={"name": name, "room": ROOM})
    peer = TextPeer(ws)
    await peer.expect_line(f"* you are in {ROOM}; members: ...", timeout=LONG_WAIT)
    return peer


async def stored_messages(user: ChatUser) -> list[dict[str, Any]]:
    """Every message in the room's history, paged back 100 at a time."""
    stored: list[dict[str, Any]] = []
    before: dict[str, str] = {}
    for page in range(50):  # bounded: 5,000 messages, far more than the test sends
        frame = {"type": "history", "room": ROOM, "limit": 100, **before}
        messages = (await user.request(frame, f"history-{page}"))["messages"]
        stored = messages + stored
        if len(messages) < 100:
            return stored
        before = {"before": messages[0]["offset"]}
    raise AssertionError("history does not end")


async def place_carol(
    compose: Stack, http: aiohttp.ClientSession, avoid: str
) -> tuple[TextPeer, str]:
    """carol, in text mode, on another node than `avoid` (nginx takes turns); her node."""
    for _ in range(5):  # bounded: nginx's round robin gives another node within three
        carol = await text_client(compose, http, "carol")
        nodes: list[str] = []
        async with asyncio.timeout(LONG_WAIT):
            while len(nodes) != 1:  # a connection just closed may still be counted
                nodes = await asyncio.to_thread(compose.node_holding, "text")
        if nodes != [avoid]:
            return carol, nodes[0]
        await carol.ws.close()
    raise AssertionError(f"every text connection landed on {avoid}")


async def place_observer(url: str, http: aiohttp.ClientSession, node: str) -> ChatUser:
    """A JSON client on `node`: reconnected under the same name until nginx puts it
    there (each time within the grace period, so nobody sees it come or go)."""
    for _ in range(6):  # bounded: nginx's round robin gives each node within three
        observer = ChatUser(4, url, http)
        observer.start()
        await observer.until(observer.up.is_set, "connection through the balancer")
        if observer.nodes[-1] == node:
            return observer
        await observer.stop()
    raise AssertionError(f"no connection landed on {node}")


def presence_events(users: list[ChatUser], seen: dict[str, int]) -> list[tuple[str, str, str]]:
    """(observer, event, name) for every presence event the users saw after the first
    `seen[name]` of each."""
    return [
        (u.name, p["event"], p["name"]) for u in users for p in u.presence[seen.get(u.name, 0) :]
    ]


async def test_the_compose_stack_chats_through_node_and_redis_faults(
    stack: tuple[Stack, dict[str, float]], http: aiohttp.ClientSession
) -> None:
    """Guards against a compose file or image that does not run (a wrong health check,
    a missing file, nginx not reaching the nodes), and against a deployment that loses
    a message, or shows a leave or join for someone who merely moved, when a node or
    Redis goes away."""
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
        carol, carol_node = await place_carol(compose, http, avoid=alice_node)
        # dave stays on the node that is neither stopped nor killed: he sees it all live.
        (third,) = {"gateway1", "gateway2", "gateway3"} - {alice_node, carol_node}
        dave = await place_observer(url, http, third)
        users.append(dave)

        # Both ways through the balancer.
        for count in range(MESSAGES):
            await alice.send_until_acked(f"a{count}", f"from json {count}")
            await carol.expect_line(f"{alice.name}: from json {count}", timeout=LONG_WAIT)
            await carol.ws.send_str(f"from text {count}")
            await carol.expect_line("* sent", timeout=LONG_WAIT)
        await alice.until(lambda: len(alice.offsets) >= 2 * MESSAGES, "messages from carol")
        figures["messages_through_the_balancer"] = 2 * MESSAGES
        settled = {u.name: len(u.presence) for u in users}  # from here: only carol's leave
        carol_read = len(carol.frames)

        # SIGTERM alice's node: she moves to another node; nobody sees her go or come.
        await dave.until(lambda: dave.has_received(set(alice.acked.values())), "messages")
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
        last = f"{bob.name}: {bob.name} says {len(bob.acked)}"
        await carol.expect_line(last, timeout=LONG_WAIT)  # carol has read all up to here
        presence_lines = [
            line
            for line in carol.frames[carol_read:]
            if re.fullmatch(rf"\* \S+ (joined|left) {ROOM}", line)
        ]
        assert not presence_lines, presence_lines

        # SIGKILL carol's node: the others see her leave once its heartbeat expires
        # (its key lives 12 s after its last beat, every 3 s; a reaper looks every 3 s).
        started = time.monotonic()
        await asyncio.to_thread(
            compose.podman_run, "kill", "--signal", "KILL", compose.container(carol_node)
        )
        async with asyncio.timeout(PRESENCE_TIMEOUT + LONG_WAIT):
            while ("leave", "carol") not in {(e, n) for _, e, n in presence_events([dave], {})}:
                await dave.changed.wait()
        figures["sigkill_leave_seconds"] = round(time.monotonic() - started, 1)
        assert 8.0 <= figures["sigkill_leave_seconds"] <= PRESENCE_TIMEOUT + 2, figures
        await alice.until(alice.up.is_set, "a connection after the kill")

        # Restart Redis (SIGTERM: it writes its AOF): sends are refused while it is
        # down, then taken again.
        await asyncio.to_thread(compose.podman_run, "stop", compose.container("redis"))
        answer: dict[str, Any] = {}
        async with asyncio.timeout(LONG_WAIT):
            while answer.get("code") != "unavailable":
                frame = {"type": "send", "room": ROOM, "text": "while redis is down"}
                try:
                    answer = await alice.request(frame, f"down-{time.monotonic()}")
                except ConnectionError:
                    continue  # she reconnects; ask again on the new connection
                assert answer["type"] == "error", answer  # never acked while Redis is down
        await asyncio.to_thread(compose.podman_run, "start", compose.container("redis"))
        started = time.monotonic()
        await alice.send_until_acked("after-redis", "redis is back")
        figures["redis_back_to_ack_seconds"] = round(time.monotonic() - started, 1)

        # Nothing acked is lost: every acked message is in the room's history, carol's
        # (acked in text mode with `* sent`) by their text; nobody left but carol.
        async with asyncio.timeout(LONG_WAIT):
            stored = await stored_messages(alice)
        kept = {m["offset"] for m in stored}
        acked = set(alice.acked.values()) | set(bob.acked.values())
        from_carol = {m["text"] for m in stored if m["from"] == "carol"}
        missing = len(acked - kept) + MESSAGES - len(from_carol)
        figures["acked_messages"] = len(acked) + MESSAGES
        figures["lost"] = missing
        assert acked <= kept, sorted(acked - kept)
        assert from_carol == {f"from text {count}" for count in range(MESSAGES)}
        after = presence_events(users, settled)
        assert {(event, name) for _, event, name in after} == {("leave", "carol")}, after
        # The per-address limit (on; every client here is one address to the nodes, the
        # one the host forwards from) never refused a client of this test.
        figures["ws_refused_429"] = await asyncio.to_thread(compose.ws_refused)
        assert figures["ws_refused_429"] == 0, figures
    except BaseException:
        # What each service said, to tell a refusal (429: the per-address limit) or a
        # node's own trouble from a slow step, since the stack is gone afterwards.
        with contextlib.suppress(Exception):
            figures["ws_refused_429"] = await asyncio.to_thread(compose.ws_refused)
            print(await asyncio.to_thread(compose.logs))
        raise
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
    assert compose.leftovers() == {"containers": [], "pods": [], "networks": [], "volumes": []}
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
