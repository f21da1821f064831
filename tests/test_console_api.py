"""The operator API's reads for the console (docs/protocol.md, "The operator API"):
nodes, a user's whereabouts, the audit and room activity, over HTTP on every broker,
across two nodes on Redis and the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.room_activity import Activity, RoomActivity
from tests.conftest import WAIT
from tests.plugins.auth import Gateway
from tests.plugins.moderation import API_KEY, OPERATOR, two_nodes, user

READS = ("/api/nodes", "/api/users/vic", "/api/audit", "/api/activity")


async def read(node: TestClient, path: str) -> Any:
    """The JSON of a GET with the API key (fails on anything but 200)."""
    response = await node.get(path, headers=OPERATOR)
    assert response.status == 200, (path, response.status, await response.text())
    return await response.json()


async def read_until(
    node: TestClient, path: str, check: Callable[[Any], bool], timeout: float = WAIT
) -> Any:
    """GET `path` until `check` holds for its JSON (the heartbeats carry the statuses)."""
    body = None
    try:
        async with asyncio.timeout(timeout):
            while not check(body := await read(node, path)):  # noqa: ASYNC110 (a poll)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{path} still answers {body}") from None
    return body


async def test_the_reads_want_the_api_key(gateway: Gateway) -> None:
    """Guards against a console read open to anyone, or open when no key is set."""
    node = await gateway(api_key=API_KEY)
    for path in READS:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            response = await node.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert (await response.json())["error"]["code"] == "unauthorized"
    keyless = await gateway()
    for path in READS:
        assert (await keyless.get(path, headers=OPERATOR)).status == 403


async def test_nodes_lists_each_node_with_its_status(gateway: Gateway, broker_kind: str) -> None:
    """Guards against a node missing from the list, or a status without its numbers."""
    one, two = await two_nodes(gateway, broker_kind)
    await user(two, "vic")
    wanted = {"n1"} if broker_kind == "memory" else {"n1", "n2"}

    def every_node(body: Any) -> bool:  # each ready (its first beat is before it is)
        return {n["id"] for n in body["nodes"] if n["ready"] and not n["why"]} == wanted

    body = await read_until(one, "/api/nodes", every_node)
    for status in body["nodes"]:
        assert status["ready"] is True and status["why"] == ""
        assert status["address"].endswith(":8080") and status["started"] <= status["seen"]
        assert set(status["numbers"]) >= {"messages", "errors", "slow_consumers"}
        assert (status["probe_rtt"] is None) == (broker_kind == "memory")
    # the connection shows once the next heartbeat carries it
    await read_until(one, "/api/nodes", lambda b: sum(n["connections"] for n in b["nodes"]) == 1)


async def test_a_node_that_stops_leaves_the_list_at_once(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against a stopped node listed until its heartbeat expires (it hands over
    its status with its presence: the console would show it alive)."""
    if broker_kind == "memory":
        pytest.skip("one node: nothing else lists it")
    one, two = await two_nodes(gateway, broker_kind, presence_timeout=30.0)
    await read_until(one, "/api/nodes", lambda b: len(b["nodes"]) == 2)
    await two.close()  # its cleanup hands over
    assert [n["id"] for n in (await read(one, "/api/nodes"))["nodes"]] == ["n1"]


async def test_a_user_is_found_with_its_connections_nodes_and_rooms(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against a user search that misses a node, a connection or a room."""
    one, two = await two_nodes(gateway, broker_kind)
    await user(one, "Vic", room="team-a")
    await user(two, "Vic", room="lobby")
    await user(two, "wat", room="team-b")
    found = await read(two, "/api/users/vic")
    assert found["name"] == "Vic" and found["online"] is True
    assert len(found["connections"]) == 2
    nodes = ["n1"] if broker_kind == "memory" else ["n1", "n2"]
    assert found["nodes"] == nodes
    held = ["n1", "n1"] if broker_kind == "memory" else ["n1", "n2"]
    assert sorted(c["node"] for c in found["connections"]) == held
    assert found["rooms"] == ["lobby", "team-a"]
    nobody = await read(one, "/api/users/nobody")
    assert nobody == {"name": "nobody", "online": False, "connections": [], "nodes": [],
                      "rooms": []}  # fmt: skip
    assert (await one.get("/api/users/%20", headers=OPERATOR)).status == 400


async def test_the_audit_keeps_the_recent_actions_of_every_node(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against moderation actions only logged, or kept by one node only."""
    one, two = await two_nodes(gateway, broker_kind)
    moderator = await user(one, "mod", moderates=["team-*"])
    await moderator.request("kick", room="team-a", name="vic", seconds=30)
    ban = await two.put("/api/rooms/team-a/bans/vic", json={"seconds": 60}, headers=OPERATOR)
    assert ban.status == 204
    assert (await two.delete("/api/rooms/team-a/bans/vic", headers=OPERATOR)).status == 204
    assert (await one.post("/api/users/vic/disconnect", headers=OPERATOR)).status == 202
    actions = (await read(two, "/api/audit"))["actions"]
    assert [a["action"] for a in actions] == ["disconnect", "unban", "ban", "ban"]
    assert actions[0]["actor"] == "operator" and actions[0]["name"] == "vic"
    assert actions[2]["seconds"] == 60 and actions[2]["room"] == "team-a"
    assert actions[3]["actor"] == "moderator" and actions[3]["by"] == "mod"
    assert actions[3]["node"] == "n1" and actions[2]["node"] == ("n1" if one is two else "n2")
    assert all(a["ts"] >= actions[0]["ts"] - 60_000 for a in actions)
    assert (await read(one, "/api/audit?limit=1"))["actions"] == actions[:1]
    for bad in ("0", "201", "x"):
        response = await one.get(f"/api/audit?limit={bad}", headers=OPERATOR)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


async def test_activity_counts_the_messages_of_the_last_minute(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against a room's activity that counts nothing, or counts its history."""
    one, two = await two_nodes(gateway, broker_kind, rooms_refresh=0)
    sender = await user(one, "sam", room="team-a")
    await user(two, "wat", room="team-a")
    await sender.request("send", room="team-a", text="before")
    first = await read(two, "/api/activity")
    assert first["rooms"] == [{"room": "team-a", "members": 2, "messages": 0, "seconds": 0}]
    for index in range(3):
        await sender.request("send", room="team-a", text=f"m{index}")
    later = (await read(two, "/api/activity"))["rooms"][0]
    assert later["messages"] == 3 and 0 <= later["seconds"] < 60


async def test_the_admin_page_is_served_with_the_strict_policy(gateway: Gateway) -> None:
    """Guards against a console page without the chat page's CSP."""
    node = await gateway()
    response = await node.get("/admin")
    assert response.status == 200 and "text/html" in response.headers["Content-Type"]
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    page = await response.text()
    assert '<script type="module" src="static/admin.js"' in page and "<style" not in page


def test_activity_keeps_one_minute_and_starts_again_when_a_count_drops() -> None:
    """Guards against a per-minute count that grows past the minute, or goes negative
    when a room's history expired and began anew."""
    now = [0.0]
    activity = RoomActivity(clock=lambda: now[0])
    assert activity.sample({"a": 10})["a"] == Activity(0, 0.0)
    for second, count in ((30, 15), (59, 20), (75, 26)):
        now[0] = second
        seen = activity.sample({"a": count})["a"]
    assert seen == Activity(11, 45.0)  # from the sample at 30 s: the one at 0 s is gone
    now[0] = 80
    assert activity.sample({"a": 2})["a"] == Activity(0, 0.0)  # a new history
    now[0] = 81
    assert activity.sample({"a": 5, "b": 1}) == {"a": Activity(3, 1.0), "b": Activity(0, 0.0)}
    assert activity.sample({"b": 1}).keys() == {"b"}  # a room gone is forgotten
