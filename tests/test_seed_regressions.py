"""The faults of the threaded socket chat this project started from, as regressions."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from tests.conftest import WAIT, TextPeer, join_json, join_text


async def test_two_quick_messages_stay_two_lines(client: TestClient) -> None:
    """The seed sent raw TCP: two quick messages arrived merged into one line."""
    ann = await join_text(client, "ann")
    bob = await join_text(client, "bob")
    await ann.say("first")
    await ann.say("second")
    assert await bob.expect_line("ann: first") == "ann: first"
    assert await bob.recv() == "ann: second"


async def test_a_clean_close_is_announced_once_and_leaves_no_work(client: TestClient) -> None:
    """The seed's thread spun at 100% CPU after a clean close and never announced the leave."""
    watcher = await join_json(client, "watcher")
    bob = await join_text(client, "bob")
    await bob.say("/quit")
    assert await bob.close_code() == 1000
    await watcher.expect("presence", event="leave", name="bob")
    await watcher.send(type="send", room="lobby", text="marker", ref="m")
    await watcher.expect("message", text="marker")
    leaves = [f for f in watcher.frames if f["type"] == "presence" and f["event"] == "leave"]
    assert len(leaves) == 1
    bobs = [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith(("writer-test-node/", "closer-test-node/"))
        and t.get_name().endswith("/2")  # bob's is the node's second connection
    ]
    if bobs:
        await asyncio.wait(bobs, timeout=WAIT)
    assert all(t.done() for t in bobs), "bob's tasks still run after his connection closed"
    busy = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("leave-")]
    assert busy == []


async def test_a_join_is_a_system_line_not_a_message(client: TestClient) -> None:
    """The seed announced joins as if the user said them: 'bob: Client bob joined'."""
    ann = await join_text(client, "ann")
    await join_text(client, "bob")
    assert await ann.expect_line("* bob joined lobby") == "* bob joined lobby"
    assert not any(line.startswith("bob:") for line in ann.frames)


async def test_a_second_bob_is_refused_in_text_mode(client: TestClient) -> None:
    """The seed let two people take the same name."""
    await join_text(client, "bob")
    ws = await client.ws_connect("/ws", params={"name": "bob"})
    second = TextPeer(ws)
    assert await second.recv() == "! the name bob is taken"
    assert await second.recv() == "Your name:"
