"""Names and sessions (PROTOCOL.md section 5)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import JSON_PROTOCOL, JsonPeer, join_json


async def connect(client: TestClient, **params: str) -> JsonPeer:
    ws = await client.ws_connect("/ws", params=params, protocols=(JSON_PROTOCOL,))
    return JsonPeer(ws)


async def test_a_taken_name_is_refused_case_insensitively(client: TestClient) -> None:
    """Guards against two users with the same name (the seed let two 'bob's in)."""
    await join_json(client, "Bob")
    second = await connect(client, name="bOB")
    error = await second.recv()
    assert (error["type"], error["code"]) == ("error", "name_taken")
    assert await second.close_code() == 1008


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * 33, "bad\x00name", "tab\tname", "zero\u200bwidth", "rtl\u202ename"]
)
async def test_invalid_names_are_refused(client: TestClient, name: str) -> None:
    """Guards against empty, overlong or invisible-character names."""
    peer = await connect(client, name=name)
    error = await peer.recv()
    assert error["code"] == "invalid_name"
    assert await peer.close_code() == 1008


async def test_json_mode_requires_a_name(client: TestClient) -> None:
    """Guards against anonymous JSON connections."""
    peer = await connect(client)
    assert (await peer.recv())["code"] == "invalid_name"
    assert await peer.close_code() == 1008


async def test_names_of_any_script_are_welcome(client: TestClient) -> None:
    """Guards against an ASCII-only name rule."""
    for name in ("Zoë", "Дмитрий", "李小龍", "a b"):
        peer = await join_json(client, name)
        assert peer.welcome["name"] == name


async def test_a_session_takes_the_name_over(client: TestClient) -> None:
    """Guards against a user locked out of their name by their own stale connection."""
    watcher = await join_json(client, "watcher")
    old = await join_json(client, "alice")
    new = await join_json(client, "alice", session=old.welcome["session"])
    assert new.welcome["name"] == "alice"
    assert await old.close_code() == 4000  # session taken over
    await watcher.send(type="send", room="lobby", text="marker", ref="m")
    await new.expect("message", text="marker")
    await watcher.expect("message", text="marker")
    assert not [f for f in watcher.frames if f["type"] == "presence" and f["name"] == "alice"][1:]


async def test_a_wrong_session_does_not_take_the_name(client: TestClient) -> None:
    """Guards against taking someone's name with a guessed session."""
    owner = await join_json(client, "alice")
    thief = await connect(client, name="alice", session="guess")
    assert (await thief.recv())["code"] == "name_taken"
    assert (await owner.request("ping"))["type"] == "pong"


async def test_a_name_is_free_again_after_its_connection_closed(client: TestClient) -> None:
    """Guards against names that stay taken forever after a clean close."""
    alice = await join_json(client, "alice")
    await alice.ws.close()
    again = await join_json(client, "alice")
    assert again.welcome["name"] == "alice"


async def test_direct_messages_reach_a_name_after_quick_reconnects(client: TestClient) -> None:
    """Guards against DMs lost after quick reconnects of the same name (the name's
    channel must stay subscribed while the old connection is released)."""
    bob = await join_json(client, "bob")
    alice = await join_json(client, "alice")
    for i in range(5):
        await alice.ws.close()
        alice = await join_json(client, "alice", session=alice.welcome["session"])
        assert (await bob.request("dm", to="alice", text=f"psst {i}"))["type"] == "ack"
        assert (await alice.expect("dm"))["text"] == f"psst {i}"
