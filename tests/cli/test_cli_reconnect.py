"""`chat` across dropped connections: reconnect, resume, resend; through a TCP proxy
that the test cuts, or a gateway that restarts."""

from __future__ import annotations

import pytest
from chat_helpers import TcpProxy, unique


@pytest.mark.parametrize("seen_before", [True, False], ids=["after-a-message", "empty-room"])
async def test_missed_messages_shown_once_after_reconnect(
    gateway_server, proxy, chat_procs, observe, seen_before
):
    """Messages sent while the connection is cut appear exactly once after the reconnect,
    in order, and a line typed while cut is delivered exactly once.

    Guards against: resuming without `since` (messages lost), replaying from the start
    (duplicates), losing a queued send or sending it twice, and no "reconnected" line.
    `empty-room` covers a room with no message yet, where there is no offset to resume
    from and the gap must still be filled.
    """
    room, carol, dave = unique("cut"), unique("carol"), unique("dave")
    watcher = await observe(gateway_server.url, dave, room)
    chat = await chat_procs(proxy.url, "--name", carol, "--room", room)
    await chat.expect(rf"^\* you are in {room}: ")
    if seen_before:
        await watcher.say("before")
        await chat.expect(rf"^{dave}: before$")

    proxy.accepting = False
    proxy.cut()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    await chat.write("typed while cut")
    for text in ("missed 1", "missed 2", "missed 3"):
        await watcher.say(text)
    proxy.accepting = True
    await chat.expect(r"^\* reconnected$")
    for text in ("missed 1", "missed 2", "missed 3"):
        await chat.expect(rf"^{dave}: {text}$")
    await watcher.message(carol, "typed while cut")

    await watcher.say("after")
    await chat.expect(rf"^{dave}: after$")
    await chat.write("last")
    await watcher.message(carol, "last")
    shown = [line for line in chat.lines if line.startswith(f"{dave}: ")]
    expected = ["before"] if seen_before else []
    assert shown == [
        f"{dave}: {t}" for t in [*expected, "missed 1", "missed 2", "missed 3", "after"]
    ]
    assert watcher.texts(carol) == ["typed while cut", "last"]
    assert chat.lines.count(f"{carol}: typed while cut") == 1


async def test_send_whose_ack_was_lost_is_resent_and_delivered_once(
    gateway_server, proxy, chat_procs, observe
):
    """A send the server took but whose ack never arrived is sent again with the same
    `id` after the reconnect, and the room sees it once.

    Guards against: a send dropped because its ack was lost, or resent with a new `id`
    (the server cannot dedupe it: a duplicate in the room).
    """
    room, carol, dave = unique("ack"), unique("carol"), unique("dave")
    watcher = await observe(gateway_server.url, dave, room)
    chat = await chat_procs(proxy.url, "--name", carol, "--room", room)
    await chat.expect(rf"^\* you are in {room}: ")

    proxy.drop_downstream = True  # the server's answers vanish on the way
    await chat.write("ack lost")
    await watcher.message(carol, "ack lost")
    proxy.drop_downstream = False
    proxy.cut()
    await chat.expect(r"^\* reconnected$")
    await chat.write("next")
    await watcher.message(carol, "next")  # sent only once "ack lost" was acked
    await chat.expect(rf"^{carol}: next$")
    assert watcher.texts(carol) == ["ack lost", "next"]
    assert chat.lines.count(f"{carol}: ack lost") == 1


async def test_gateway_restart_reconnects_and_chat_goes_on(own_gateway, chat_procs, observe):
    """When the gateway shuts down (close 1001) and comes back, the client reconnects
    by itself, takes its name back and goes on chatting.

    Guards against: treating 1001 as final (exiting), giving up while the server is
    down, or a resume that fails on a server that lost its history and sessions.
    """
    carol, dave = unique("carol"), unique("dave")
    chat = await chat_procs(own_gateway.url, "--name", carol)
    await chat.expect(r"^\* you are in lobby: ")
    own_gateway.stop()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    own_gateway.start()
    await chat.expect(r"^\* reconnected$")

    watcher = await observe(own_gateway.url, dave)
    await watcher.say("welcome back")
    await chat.expect(rf"^{dave}: welcome back$")
    await chat.write("glad to be back")
    await watcher.message(carol, "glad to be back")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr


async def test_name_taken_while_away_ends_the_client_with_exit_1(own_gateway, chat_procs, observe):
    """If someone took the name while the gateway was down, the reconnect is refused
    for good: pipe mode exits 1 and says why on stderr.

    Guards against: retrying a refused name forever (a hung script), or exiting 0.
    """
    carol = unique("carol")
    relay = await TcpProxy(own_gateway.port).start()
    try:
        chat = await chat_procs(relay.url, "--name", carol)
        await chat.expect(r"^\* you are in lobby: ")
        relay.accepting = False  # so the impostor surely gets there first
        own_gateway.stop()
        await chat.expect(r"^\* reconnecting\.\.\.$")
        own_gateway.start()
        await observe(own_gateway.url, carol)
        relay.accepting = True
        assert await chat.wait() == 1, chat.stderr
        assert "taken" in chat.stderr
    finally:
        await relay.close()
