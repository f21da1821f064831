"""Cheap requests that must not cost the node dearly (issue 19, finding 7): `rooms` from
the node's kept list (gateway/room_directory.py), a history budget per connection, and
the REST reads (but the API key's) limited per client address."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.auth import mint
from gateway.broker.redis_scripts import Keys
from gateway.node import NODE
from tests.conftest import WAIT, JsonPeer, join_json, join_text, read_metric
from tests.plugins.redis import RedisBackend

StartGateway = Callable[..., Awaitable[TestClient]]

API_KEY = "k3y-for-tests"
SECRET = "a-test-secret-of-at-least-32-bytes-for-the-reads"


def _servers(kind: str, request: pytest.FixtureRequest, backend: RedisBackend) -> list[Any]:
    """A synchronous client of each Redis server the node uses."""
    if kind == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return [cluster.client(port) for port in cluster.live_ports()]
    return [backend.client()]


def _calls(servers: list[Any], command: str) -> int:
    """How many times `command` ran on `servers` so far (INFO commandstats)."""
    total = 0
    for server in servers:
        stats = server.info("commandstats")
        total += int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return total


@pytest.mark.parametrize("broker_kind", ["redis", "cluster"])
async def test_listing_1001_rooms_costs_no_scan_per_request(
    gateway: StartGateway,
    broker_kind: str,
    redis_backend: RedisBackend,
    request: pytest.FixtureRequest,
) -> None:
    """Guards against `rooms` (the frame, text-mode /rooms, GET /api/rooms) sweeping the
    keyspace for every request: at 1,001 rooms one client asking 5 times a second used
    81 % of a node's CPU. Within --rooms-refresh the node answers from memory."""
    if broker_kind == "redis" and redis_backend.server is None:
        pytest.skip("INFO commandstats needs a real redis-server")
    node = await gateway(rooms_refresh=60.0)
    keys = Keys(node.app[NODE].settings.redis_prefix)
    filler: Any = (
        request.getfixturevalue("redis_cluster").cluster_client()
        if broker_kind == "cluster"
        else redis_backend.client()
    )
    pipe = filler.pipeline()
    for index in range(1001):  # 1 to 3 members each: 333 rooms of 3
        pipe.sadd(keys.presence(f"room{index:04}"), *[f"u{n}" for n in range(1 + index % 3)])
    pipe.execute()
    alice = await join_json(node, "alice")
    text = await join_text(node, "tom")
    first = await alice.request("rooms")
    assert first["total"] == 1002  # and lobby
    assert len(first["rooms"]) == 100  # --max-rooms-listed: the busiest, by name
    assert {r["members"] for r in first["rooms"]} == {3}
    assert [r["room"] for r in first["rooms"]] == sorted(r["room"] for r in first["rooms"])

    servers = _servers(broker_kind, request, redis_backend)
    scans, scards = _calls(servers, "scan"), _calls(servers, "scard")
    for _ in range(30):
        assert (await alice.request("rooms"))["total"] == 1002
    for _ in range(10):
        listed = await (await node.get("/api/rooms")).json()
        assert listed["total"] == 1002 and len(listed["rooms"]) == 100
    await text.say("/rooms")
    await text.until(lambda line: line.startswith("* rooms: ") and line.endswith(" and 902 more"))
    assert _calls(servers, "scan") == scans
    assert _calls(servers, "scard") == scards


async def _until_listed(peer: JsonPeer, rooms: list[tuple[str, int]], total: int) -> None:
    """Ask for the rooms until they are `rooms` of `total` (within WAIT: a leave is
    announced by the step that records it, so it may reach the peer a moment first)."""
    expected = [{"room": room, "members": count} for room, count in rooms]
    answer: dict[str, Any] = {}
    async with asyncio.timeout(WAIT):
        while (answer.get("rooms"), answer.get("total")) != (expected, total):
            answer = await peer.request("rooms")


async def test_rooms_follow_this_nodes_joins_and_leaves_at_once(gateway: StartGateway) -> None:
    """Guards against a kept list of rooms that shows a room filled or emptied through
    this node (by joins, leaves, a kick) only at the next sweep (a minute, here), or a
    cut list without its total."""
    node = await gateway(rooms_refresh=60.0, max_rooms_listed=2, api_key=API_KEY)
    alice = await join_json(node, "alice")
    await _until_listed(alice, [("lobby", 1)], 1)  # the sweep: kept from now on
    bob = await join_json(node, "bob", room="dev")
    carol = await join_json(node, "carol", room="dev")
    dave = await join_json(node, "dave", room="ops")
    # dev (2) is the busiest; lobby and ops tie at 1: lobby comes first by name.
    await _until_listed(alice, [("dev", 2), ("lobby", 1)], 3)
    tom = await join_text(node, "tom", room="ops")
    await _until_listed(alice, [("dev", 2), ("ops", 2)], 3)
    await tom.say("/rooms")
    await tom.expect_line("* rooms: dev (2), ops (2) and 1 more")
    await carol.ws.close()
    await dave.ws.close()
    await tom.ws.close()
    await _until_listed(alice, [("dev", 1), ("lobby", 1)], 2)
    await bob.ws.close()
    await _until_listed(alice, [("lobby", 1)], 1)
    kick = await node.put(
        "/api/rooms/lobby/bans/alice",
        json={"seconds": 60},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert kick.status == 204
    await _until_listed(alice, [], 0)


@pytest.mark.parametrize("broker_kind", ["redis", "cluster"])
async def test_rooms_show_another_nodes_joins_after_the_refresh(gateway: StartGateway) -> None:
    """Guards against a node that never sweeps again, and so never lists the rooms that
    filled or emptied through other nodes."""
    first = await gateway(rooms_refresh=0.2)
    second = await gateway(node_id="other-node")
    alice = await join_json(first, "alice")
    await _until_listed(alice, [("lobby", 1)], 1)
    bob = await join_json(second, "bob", room="remote")
    await _until_listed(alice, [("lobby", 1), ("remote", 1)], 2)
    await bob.ws.close()
    await _until_listed(alice, [("lobby", 1)], 1)


async def test_a_history_flood_is_refused_while_others_chat(gateway: StartGateway) -> None:
    """Guards against one connection reading history as fast as it can send (464
    requests/s, 240 MB/s out, in the probe) and slowing everyone else's messages: past
    its budget a history request answers `rate_limited`, and nothing is read."""
    node = await gateway(history_rate=100.0, history_burst=500)
    reader = await join_json(node, "reader")
    bob = await join_json(node, "bob")
    carol = await join_json(node, "carol")
    for n in range(10):  # half the send burst: bob's messages below are not rate limited
        await bob.request("send", room="lobby", text=f"filler {n} " + "x" * 1000)
    refs = [f"h{n}" for n in range(60)]
    for ref in refs:  # all at once, not waiting for answers: 6,000 messages asked for
        await reader.send(type="history", room="lobby", limit=100, ref=ref)
    for n in range(5):
        ack = await bob.request("send", room="lobby", text=f"still here {n}")
        assert ack["type"] == "ack"
        await carol.expect("message", text=f"still here {n}")
    answers: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(WAIT):
        while len(answers) < len(refs):
            frame = await reader.recv()
            if frame.get("ref") in refs:
                answers[frame["ref"]] = frame
    served = [a for a in answers.values() if a["type"] == "history"]
    refused = [a for a in answers.values() if a["type"] == "error"]
    # 5 from the burst, and at most a few more refilled while they were answered.
    assert 5 <= len(served) <= 15, len(served)
    assert len(served) + len(refused) == len(refs)
    assert {a["code"] for a in refused} == {"rate_limited"}
    assert "history is limited to 100 messages a second" in refused[0]["message"]
    assert await read_metric(node, 'chat_rate_limited_total{limit="history"}') == len(refused)
    assert all(10 <= len(a["messages"]) <= 15 for a in served)  # and "still here"s
    assert (await reader.request("ping"))["type"] == "pong"  # the reader stays connected


async def test_text_mode_history_is_budgeted_too(gateway: StartGateway) -> None:
    """Guards against /history escaping the budget that the history frame has."""
    node = await gateway(history_rate=1.0, history_burst=100)
    tom = await join_text(node, "tom")
    await tom.say("/history 100")
    await tom.expect_line("* no messages in lobby yet...")
    await tom.say("/history 100")
    await tom.expect_line("! slow down: history is limited to 1 messages a second...")


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
async def test_rest_reads_are_limited_per_address(gateway: StartGateway, auth: bool) -> None:
    """Guards against GET /api/rooms... (open to anyone without auth, to any token holder
    with it) letting one address read as fast as it can: past its burst it gets 429 with
    Retry-After, while another address and the API key holder still read."""
    node = await gateway(
        api_read_rate=0.5,
        api_read_burst=3,
        api_key=API_KEY,
        trusted_proxies="127.0.0.1",
        jwt_secret=SECRET if auth else None,
    )
    token = {"Authorization": f"Bearer {mint(SECRET, 'reader', 60)}"} if auth else {}
    paths = ["/api/rooms", "/api/rooms/lobby/members", "/api/rooms/lobby/messages"]
    for path in paths:
        assert (await node.get(path, headers=token)).status == 200
    for path in paths:
        refused = await node.get(path, headers=token)
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await refused.json())["error"]["code"] == "rate_limited"
    assert (await node.get("/healthz")).status == 200  # health and metrics are not reads
    other = {"X-Forwarded-For": "203.0.113.7", **token}
    assert (await node.get("/api/rooms", headers=other)).status == 200
    keyed = {"Authorization": f"Bearer {API_KEY}"}
    assert (await node.get("/api/rooms", headers=keyed)).status == 200
    assert await read_metric(node, 'chat_rate_limited_total{limit="api_read"}') == 3
