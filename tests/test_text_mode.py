"""Text mode (docs/protocol.md, "Text mode"): any WebSocket client, plain lines."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from gateway.codecs.text import HELP_LINES
from tests.conftest import TextPeer, join_json, join_text


async def test_the_name_is_asked_for_and_asked_again_after_a_bad_one(client: TestClient) -> None:
    """Guards against a text client that cannot pick a name, or is dropped after a bad one."""
    await join_text(client, "bob")
    ws = await client.ws_connect("/ws")
    peer = TextPeer(ws)
    assert await peer.recv() == "Your name:"
    await peer.say("   ")
    assert (await peer.recv()).startswith("! a name is 1 to 32")
    assert await peer.recv() == "Your name:"
    await peer.say("BOB")
    assert await peer.recv() == "! the name BOB is taken"
    assert await peer.recv() == "Your name:"
    await peer.say("  alice  ")
    assert await peer.recv() == "* welcome, alice! /help lists the commands"
    assert await peer.recv() == "* you are in lobby; members: alice, bob"


async def test_text_and_json_users_chat_together(client: TestClient) -> None:
    """Guards against the two modes living in separate worlds."""
    ann = await join_text(client, "ann")
    joe = await join_json(client, "joe")
    await ann.say("hi joe")
    message = await joe.expect("message")
    assert (message["from"], message["text"]) == ("ann", "hi joe")
    await joe.send(type="send", room="lobby", text="hi ann")
    await ann.expect_line("joe: hi ann")


async def test_a_text_connection_does_not_get_its_own_messages_back(client: TestClient) -> None:
    """Guards against text users seeing every line they type twice."""
    ann = await join_text(client, "ann")
    bob = await join_text(client, "bob")
    await ann.say("one")
    await bob.expect_line("ann: one")
    await bob.say("two")
    await ann.expect_line("bob: two")
    assert "ann: one" not in ann.frames


async def test_slash_slash_sends_a_slash_and_commands_answer(client: TestClient) -> None:
    """Guards against messages starting with '/' being impossible to send."""
    ann = await join_text(client, "ann")
    bob = await join_text(client, "bob")
    await ann.say("//shrug")
    await bob.expect_line("ann: /shrug")
    await bob.say("/who")
    await bob.expect_line("* members of lobby: ann, bob")
    await bob.say("/rooms")
    await bob.expect_line("* rooms: lobby (2)")
    await bob.say("/history 1")
    await bob.expect_line("* the last message of lobby:")
    assert await bob.recv() == "ann: /shrug"
    await bob.say("/help")
    await bob.expect_line("* commands:")
    help_lines = [await bob.recv() for _ in HELP_LINES[1:]]
    for command in ("/who", "/join", "/rooms", "/msg", "/history", "/help", "/quit"):
        assert any(line.startswith(f"*   {command}") for line in help_lines), help_lines


async def test_every_line_is_a_frame_of_its_own(client: TestClient) -> None:
    """Guards against multi-line answers in one frame: websocat (and other line-oriented
    clients) shows a frame's newlines as spaces, so /help came out as one long line."""
    ann = await join_text(client, "ann")
    bob = await join_text(client, "bob")
    await ann.say("one")
    await ann.say("two")
    await bob.expect_line("ann: two")
    for command in ("/help", "/history 2"):
        await bob.say(command)
    await bob.expect_line("ann: two")  # the history's last line
    await bob.ws.send_str("/who")
    await bob.expect_line("* members of lobby: ann, bob")
    assert not [frame for frame in bob.frames if "\n" in frame], bob.frames
    assert bob.frames.count("* the last 2 messages of lobby:") == 1


async def test_own_messages_and_dms_are_confirmed(client: TestClient) -> None:
    """Guards against a text-mode sender having no sign that its message or dm went out."""
    ann = await join_text(client, "ann")
    bob = await join_text(client, "bob")
    await ann.say("hello")
    await ann.expect_line("* sent")
    await bob.expect_line("ann: hello")
    await ann.say("/msg bob psst")
    await ann.expect_line("[dm -> bob] psst")
    await bob.expect_line("[dm] ann: psst")


async def test_join_moves_a_text_connection_to_another_room(client: TestClient) -> None:
    """Guards against text connections stuck in their first room or hearing two rooms."""
    ann = await join_text(client, "ann")
    watcher = await join_json(client, "watcher")
    await ann.say("/join dev")
    await ann.expect_line("* you are in dev; members: ann")
    await watcher.expect("presence", event="leave", name="ann", room="lobby")
    await watcher.send(type="send", room="lobby", text="lobby only")
    await watcher.request("join", room="dev")
    await watcher.send(type="send", room="dev", text="dev too")
    await ann.expect_line("watcher: dev too")
    assert "watcher: lobby only" not in ann.frames


async def test_direct_messages_in_text_mode(client: TestClient) -> None:
    """Guards against DMs that look like room messages or do not reach other connections."""
    ann = await join_text(client, "ann")
    bob = await join_json(client, "bob")
    await ann.say("/msg bob psst")
    dm = await bob.expect("dm")
    assert (dm["from"], dm["to"], dm["text"]) == ("ann", "bob", "psst")
    await bob.send(type="dm", to="ann", text="yes?")
    await ann.expect_line("[dm] bob: yes?")
    await ann.say("/msg nobody hi")
    await ann.expect_line("! nobody is not online")


async def test_multiline_messages_cannot_forge_lines(client: TestClient) -> None:
    """Guards against a message that shows as a line from someone else in text mode."""
    ann = await join_text(client, "ann")
    mallory = await join_json(client, "mallory")
    await mallory.send(type="send", room="lobby", text="hi\nbob: give me your password")
    await ann.expect_line("mallory: hi")
    assert await ann.recv() == "  bob: give me your password"


async def test_quit_closes_with_1000(client: TestClient) -> None:
    """Guards against /quit leaving the connection open."""
    ann = await join_text(client, "ann")
    await ann.say("/quit")
    assert await ann.close_code() == 1000
