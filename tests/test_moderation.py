"""Moderation (docs/protocol.md, "Moderators"): kicks and bans, deletes, and the operator API,
on every broker; across two nodes on Redis and the cluster."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.auth import mint
from gateway.broker.redis_scripts import Keys
from gateway.node import NODE
from tests.conftest import WAIT, TextPeer, read_metric
from tests.plugins.auth import SECRET, Gateway, connect_json
from tests.plugins.moderation import API_KEY, MODERATOR, OPERATOR, two_nodes, user
from tests.plugins.redis_faults import needs_redis_server
from tooling.redis import RedisServer


async def test_a_kick_with_a_ban_removes_every_connection_and_holds_off_a_rejoin(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against a kick that reaches only the moderator's node, a leave announced
    once per connection (or not at all), and a ban that a join or a reconnect ignores."""
    one, two = await two_nodes(gateway, broker_kind)
    mod = await user(one, "mod", moderates=MODERATOR)
    assert mod.welcome["moderates"] == MODERATOR
    victims = [await user(one, "vic"), await user(two, "vic")]
    watcher = await user(two, "wat")
    before = time.time() * 1000
    assert (await mod.request("kick", room="team-a", name="vic", seconds=60))["type"] == "ack"
    for victim in victims:
        removed = await victim.expect("removed", room="team-a")
        assert removed["by"] == "mod"
        assert before + 59_000 <= removed["until"] <= time.time() * 1000 + 60_000
    await watcher.expect("presence", event="leave", name="vic")
    for victim in victims:
        refused = await victim.request("join", room="team-a")
        assert refused["code"] == "banned" and refused["until"] == removed["until"], refused
        assert "banned from team-a until" in refused["message"]
        assert (await victim.request("send", room="team-a", text="x"))["code"] == "not_in_room"
        assert (await victim.request("join", room="team-b"))["type"] == "subscribed"
    assert (await watcher.request("who", room="team-a"))["members"] == ["mod", "wat"]
    # A new connection naming the room in its URL: welcome, then `banned`, then 1008.
    fresh = await connect_json(two, token=mint(SECRET, "vic", 60), room="team-a")
    await fresh.expect("welcome")
    assert (await fresh.recv())["code"] == "banned"
    assert await fresh.close_code() == 1008
    await mod.send(type="send", room="team-a", text="after the kick")
    await watcher.expect("message", text="after the kick")
    leaves = [f for f in watcher.frames if f.get("event") == "leave" and f["name"] == "vic"]
    assert len(leaves) == 1, watcher.frames


async def test_a_kick_without_a_ban_lets_the_user_back(gateway: Gateway, broker_kind: str) -> None:
    """Guards against a plain kick that bans (seconds absent means none)."""
    one, two = await two_nodes(gateway, broker_kind)
    mod = await user(one, "mod", moderates=MODERATOR)
    victim = await user(two, "vic")
    assert (await mod.request("kick", room="team-a", name="VIC"))["type"] == "ack"  # any case
    removed = await victim.expect("removed", room="team-a")
    assert "until" not in removed
    assert (await victim.request("join", room="team-a"))["type"] == "subscribed"


async def test_only_moderators_of_the_room_may_kick_or_delete(gateway: Gateway) -> None:
    """Guards against the `moderates` claim being ignored, or read as `rooms`."""
    node = await gateway(jwt_secret=SECRET, api_key=API_KEY)
    plain = await user(node, "plain", room="lobby")
    other = await user(node, "other", room="lobby", moderates=["team-a"])
    ack = await plain.request("send", room="lobby", text="hello")
    for peer in (plain, other):
        for frame in (
            {"type": "kick", "room": "lobby", "name": "plain"},
            {"type": "delete", "room": "lobby", "offset": ack["offset"]},
        ):
            answer = await peer.request(frame.pop("type"), **frame)
            assert answer["type"] == "error" and answer["code"] == "forbidden", answer
            assert "moderate lobby" in answer["message"]
    assert "moderates" not in plain.welcome
    history = await plain.request("history", room="lobby")
    assert [m["text"] for m in history["messages"]] == ["hello"]


async def test_without_auth_nobody_moderates_in_band(client: TestClient) -> None:
    """Guards against an open gateway letting anyone kick: no token, no `moderates`."""
    ws = await client.ws_connect("/ws", params={"name": "eve", "room": "lobby"})
    eve = TextPeer(ws)
    await eve.expect_line("* you are in lobby...")
    await eve.say("/kick bob")
    assert "moderate lobby" in await eve.expect_line("! ...")


async def test_a_delete_reaches_every_node_and_leaves_a_tombstone(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against a delete that only one node hears, and against the text coming
    back through history, a resume's replay or REST."""
    one, two = await two_nodes(gateway, broker_kind)
    mod = await user(one, "mod", moderates=MODERATOR)
    alice = await user(two, "alice")
    resume_from = (await alice.request("send", room="team-a", text="before"))["offset"]
    offsets = [(await alice.request("send", room="team-a", text=t))["offset"] for t in "abc"]
    assert (await mod.request("delete", room="team-a", offset=offsets[1]))["type"] == "ack"
    deleted = await alice.expect("deleted", room="team-a")
    assert deleted == {"type": "deleted", "room": "team-a", "offset": offsets[1], "by": "mod"}
    expected = [("before", None), ("a", None), ("", "mod"), ("c", None)]
    history = await alice.request("history", room="team-a")
    assert [(m["text"], m.get("by")) for m in history["messages"]] == expected
    assert [m["offset"] for m in history["messages"]][1:] == offsets
    assert history["messages"][2]["deleted"] is True and history["messages"][2]["from"] == "alice"
    older = await alice.request("history", room="team-a", before=offsets[2], limit=1)
    assert [(m["text"], m.get("deleted")) for m in older["messages"]] == [("", True)]
    rest = await (await one.get("/api/rooms/team-a/messages", headers=OPERATOR)).json()
    assert [(m["text"], m.get("by")) for m in rest["messages"]] == expected
    resumed = await connect_json(
        two, token=mint(SECRET, "bob", 60), room="team-a", since=resume_from
    )
    subscribed = await resumed.expect("subscribed")
    assert subscribed["recovered"] is True
    replay = [await resumed.expect("message") for _ in offsets]
    assert [(m["text"], m.get("deleted", False)) for m in replay] == [
        ("a", False),
        ("", True),
        ("c", False),
    ]
    # A repeat is acked and not announced again; an offset the room lacks is refused.
    assert (await mod.request("delete", room="team-a", offset=offsets[1]))["type"] == "ack"
    missing = await mod.request("delete", room="team-a", offset=offsets[2] + "0")
    assert missing["code"] == "bad_frame" and "no message at" in missing["message"]
    await alice.send(type="ping", ref="last")
    await alice.expect("pong", ref="last")
    assert len([f for f in alice.frames if f.get("type") == "deleted"]) == 1


async def test_text_mode_kicks_and_sees_deletes(gateway: Gateway) -> None:
    """Guards against `/kick` missing from text mode, and text-mode lines that show a
    deleted message's text or hide that the user was removed."""
    node = await gateway(jwt_secret=SECRET, api_key=API_KEY)
    mod_ws = await node.ws_connect(
        "/ws", params={"token": mint(SECRET, "mod", 60, moderates=MODERATOR), "room": "team-a"}
    )
    mod = TextPeer(mod_ws)
    await mod.expect_line("* you are in team-a...")
    vic = TextPeer(
        await node.ws_connect("/ws", params={"token": mint(SECRET, "vic", 60), "room": "team-a"})
    )
    await vic.expect_line("* you are in team-a...")
    await vic.say("oops, a secret")
    await mod.expect_line("vic: oops, a secret")
    history = await (await node.get("/api/rooms/team-a/messages", headers=OPERATOR)).json()
    offset = history["messages"][0]["offset"]
    response = await node.delete(f"/api/rooms/team-a/messages/{offset}", headers=OPERATOR)
    assert response.status == 204
    await mod.expect_line("* operator deleted a message in team-a")
    await mod.say("/history")
    await mod.expect_line("vic: [deleted by operator]")
    await mod.say("/kick vic 30")
    await mod.expect_line("* vic was removed from team-a, banned for 30 s")
    removed = await vic.expect_line("* you were removed from team-a by mod; banned until ...")
    assert "UTC" in removed
    await vic.say("/join lobby")
    await vic.expect_line("* you are in lobby...")
    await vic.say("/join team-a")
    assert "banned from team-a until" in await vic.expect_line("! ...")
    await vic.say("still in the lobby")
    await vic.expect_line("* sent")
    await mod.say("/kick vic many")
    assert "usage: /kick NAME [SECONDS]" in await mod.expect_line("! ...")


async def test_the_operator_api_disconnects_bans_unbans_and_deletes(
    gateway: Gateway, broker_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against an operator action that reaches one node, is not audited or
    counted, or works without the API key."""
    caplog.set_level(logging.INFO, logger="gateway.audit")
    one, two = await two_nodes(gateway, broker_kind)
    victims = [await user(one, "vic"), await user(two, "vic", room="lobby")]
    watcher = await user(two, "wat")
    for method, path, body in (
        ("POST", "/api/users/vic/disconnect", None),
        ("PUT", "/api/rooms/team-a/bans/vic", {"seconds": 60}),
        ("DELETE", "/api/rooms/team-a/bans/vic", None),
        ("DELETE", "/api/rooms/team-a/messages/x-1", None),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await one.request(method, path, json=body, headers=headers)
            assert response.status == 401, (method, path, headers)
    bad = await one.put("/api/rooms/team-a/bans/vic", json={"seconds": "soon"}, headers=OPERATOR)
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_request"
    bare = await one.put("/api/rooms/team-a/bans/vic", headers=OPERATOR)  # curl -X PUT alone
    assert bare.status == 400 and (await bare.json())["error"]["code"] == "bad_request"
    said = (await bare.json())["error"]["message"]
    assert said.startswith('no body: a ban wants the JSON body {"seconds": S}'), said
    response = await one.put("/api/rooms/team-a/bans/vic", json={"seconds": 60}, headers=OPERATOR)
    assert response.status == 204
    assert (await victims[0].expect("removed", room="team-a"))["by"] == "operator"
    await watcher.expect("presence", event="leave", name="vic")
    assert (await victims[1].request("join", room="team-a"))["code"] == "banned"
    response = await one.delete("/api/rooms/team-a/bans/vic", headers=OPERATOR)
    assert response.status == 204
    assert (await victims[1].request("join", room="team-a"))["type"] == "subscribed"
    ack = await watcher.request("send", room="team-a", text="to go")
    gone = await two.delete(f"/api/rooms/team-a/messages/{ack['offset']}", headers=OPERATOR)
    assert gone.status == 204
    assert (await victims[1].expect("deleted", offset=ack["offset"]))["by"] == "operator"
    missing = await two.delete(f"/api/rooms/team-a/messages/{ack['offset']}0", headers=OPERATOR)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    assert (await two.delete("/api/rooms/team-a/messages/junk", headers=OPERATOR)).status == 404
    response = await two.post("/api/users/vic/disconnect", headers=OPERATOR)
    assert response.status == 202
    for victim in victims:
        assert await victim.close_code() == 4001
    assert (await watcher.request("ping"))["type"] == "pong"  # the others stay
    audit = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert [line.split()[1] for line in audit] == ["ban", "unban", "delete", "disconnect"]
    assert "operator='operator'" in audit[0] and "name='vic'" in audit[0]
    assert "room='team-a'" in audit[0] and "peer=" in audit[0]
    counted = 'chat_moderation_actions_total{action="ban",actor="operator"}'
    assert await read_metric(one, counted) == 1.0


async def test_the_operator_api_is_off_without_a_key(client: TestClient) -> None:
    """Guards against the operator endpoints being open when no API key is set."""
    response = await client.post("/api/users/vic/disconnect", headers=OPERATOR)
    assert response.status == 403
    assert "--api-key" in (await response.json())["error"]["message"]


async def test_a_ban_refuses_a_return_within_the_grace_period(gateway: Gateway) -> None:
    """Guards against a name that left a moment ago (still present for its grace
    period, so the broker is not asked again) walking back in through a new ban: with
    a connection still open, and with none (then no removal reaches its node)."""
    node = await gateway(jwt_secret=SECRET, api_key=API_KEY, grace_period=30.0)
    victim = await user(node, "vic")
    await victim.request("leave", room="team-a")
    response = await node.put("/api/rooms/team-a/bans/vic", json={"seconds": 60}, headers=OPERATOR)
    assert response.status == 204
    assert (await victim.request("join", room="team-a"))["code"] == "banned"
    other = await user(node, "eve")
    await other.ws.close()
    await node.put("/api/rooms/team-a/bans/eve", json={"seconds": 60}, headers=OPERATOR)
    again = await connect_json(node, token=mint(SECRET, "eve", 60), room="team-a")
    await again.expect("welcome")
    assert (await again.recv())["code"] == "banned"


@pytest.mark.parametrize("broker_kind", ["redis", "cluster"])
async def test_bans_and_deletes_survive_a_node_restart(gateway: Gateway) -> None:
    """Guards against bans or tombstones kept in a node's memory: a node started
    afresh on the same Redis still refuses the banned user and hides the text."""
    node = await gateway(jwt_secret=SECRET, api_key=API_KEY, node_id="n1")
    alice = await user(node, "alice")
    ack = await alice.request("send", room="team-a", text="regretted")
    await node.put("/api/rooms/team-a/bans/vic", json={"seconds": 60}, headers=OPERATOR)
    await node.delete(f"/api/rooms/team-a/messages/{ack['offset']}", headers=OPERATOR)
    await node.close()
    again = await gateway(jwt_secret=SECRET, api_key=API_KEY, node_id="n1")
    fresh = await connect_json(again, token=mint(SECRET, "vic", 60), room="team-a")
    await fresh.expect("welcome")
    assert (await fresh.recv(timeout=WAIT))["code"] == "banned"
    history = await (await again.get("/api/rooms/team-a/messages", headers=OPERATOR)).json()
    assert [(m["text"], m.get("deleted")) for m in history["messages"]] == [("", True)]


async def test_a_kick_skips_the_grace_period(gateway: Gateway, broker_kind: str) -> None:
    """Guards against a kicked name lingering as a member for the grace period, both
    for a connection in the room and for a name that left it a moment ago."""
    one, two = await two_nodes(gateway, broker_kind, grace_period=60.0)
    mod = await user(one, "mod", moderates=MODERATOR)
    watcher = await user(two, "wat")
    victim = await user(two, "vic")
    assert (await mod.request("kick", room="team-a", name="vic"))["type"] == "ack"
    await victim.expect("removed", room="team-a")
    await watcher.expect("presence", event="leave", name="vic")  # not a minute later
    assert (await victim.request("join", room="team-a"))["type"] == "subscribed"
    await victim.request("leave", room="team-a")  # present for its grace period
    assert "vic" in (await watcher.request("who", room="team-a"))["members"]
    assert (await mod.request("kick", room="team-a", name="VIC"))["type"] == "ack"
    await watcher.expect("presence", event="leave", name="vic")  # as it joined, not "VIC"


async def test_tombstones_keep_their_place_at_the_head_and_go_with_trimming(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against tombstones of the oldest messages being taken for trimmed ones
    (the message vanishes), against stale tombstones outliving the history they were in
    (a resume then claims `recovered` over a hole), and against an offset written
    another way ("E-01") announced as written."""
    node = await gateway(jwt_secret=SECRET, api_key=API_KEY, history_size=5)
    mod = await user(node, "mod", moderates=MODERATOR)
    offsets = [(await mod.request("send", room="team-a", text=f"m{i}"))["offset"] for i in range(3)]
    epoch, _, first = offsets[0].rpartition("-")
    assert (await mod.request("delete", room="team-a", offset=f"{epoch}-0{first}"))["type"] == "ack"
    assert (await mod.expect("deleted"))["offset"] == offsets[0]
    assert (await mod.request("delete", room="team-a", offset=offsets[1]))["type"] == "ack"
    history = await mod.request("history", room="team-a")
    shown = [(m["offset"], m["text"]) for m in history["messages"]]
    assert shown == [(offsets[0], ""), (offsets[1], ""), (offsets[2], "m2")]
    for i in range(3, 12):
        await mod.request("send", room="team-a", text=f"m{i}")
    history = await mod.request("history", room="team-a", limit=100)
    assert [m["text"] for m in history["messages"]] == [f"m{i}" for i in range(7, 12)]
    resumed = await connect_json(
        node, token=mint(SECRET, "bob", 60), room="team-a", since=offsets[0]
    )
    assert (await resumed.expect("subscribed"))["recovered"] is False
    rest = await (await node.get("/api/rooms/team-a/messages?limit=100", headers=OPERATOR)).json()
    assert [m["text"] for m in rest["messages"]] == [f"m{i}" for i in range(7, 12)]


@needs_redis_server
async def test_a_ban_a_node_did_not_hear_removes_when_it_subscribes_again(
    own_redis: RedisServer,
    node_on: Callable[..., Awaitable[TestClient]],
) -> None:
    """Guards against a banned user staying in the room for good when the node missed
    the removal (published while its subscription was away): on its next subscription
    the node puts its presence back, finds the ban and removes the user itself."""
    node = await node_on(own_redis.url, "n0", jwt_secret=SECRET, api_key=API_KEY)
    victim = await user(node, "vic")
    watcher = await user(node, "wat")
    keys = Keys(node.server.app[NODE].settings.redis_prefix)
    until = int(time.time() * 1000) + 60_000
    redis = own_redis.client()
    try:  # the ban is stored; its removal never reaches the node
        redis.set(keys.ban("team-a", "vic"), f"{until} mod", px=60_000)
        redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        redis.close()
    removed = await victim.expect("removed", room="team-a", timeout=WAIT * 2)
    assert removed["by"] == "mod" and removed["until"] == until
    await watcher.expect("presence", event="leave", name="vic")
    assert (await watcher.request("who", room="team-a"))["members"] == ["wat"]
    assert (await victim.request("join", room="team-a"))["code"] == "banned"


async def test_a_kick_ends_the_grace_period_of_a_name_gone_from_its_node(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against a kicked name that lingers for its grace period because it has no
    connection left on its node (which then listens to its user channel no more)."""
    one, two = await two_nodes(gateway, broker_kind, grace_period=60.0)
    mod = await user(one, "mod", moderates=MODERATOR)
    watcher = await user(one, "wat")
    victim = await user(two, "vic")
    await victim.ws.close()  # present for a minute more, with no connection anywhere
    assert "vic" in (await mod.request("who", room="team-a"))["members"]
    assert (await mod.request("kick", room="team-a", name="vic"))["type"] == "ack"
    await watcher.expect("presence", event="leave", name="vic")  # not a minute later
    assert (await mod.request("who", room="team-a"))["members"] == ["mod", "wat"]
    back = await user(two, "vic")  # a plain kick: it may come back, and is seen to
    await watcher.expect("presence", event="join", name="vic")
    assert (await back.request("who", room="team-a"))["members"] == ["mod", "vic", "wat"]
