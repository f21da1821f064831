"""A room's recent history, shown on entering it (the first room, and each /join),
once and before live messages, as on the web page (issue 10)."""

from __future__ import annotations

import re

from chat_helpers import unique


def said(lines: list[str], *names: str) -> list[str]:
    """The message lines of `names`, in the order shown."""
    pattern = re.compile(rf"^({'|'.join(map(re.escape, names))}): ")
    return [line for line in lines if pattern.match(line)]


async def test_the_first_room_shows_its_recent_history_then_live_messages_once(
    gateway_server, chat_procs, observe
):
    """Guards against: no history at start, history after (or mixed into) live
    messages, and a message shown twice: the client's own (pipe mode prints the
    server's copy, once), or one both in the history and live.
    """
    room, bot, dave = unique("hist"), unique("bot"), unique("dave")
    watcher = await observe(gateway_server.url, dave, room)
    for text in ("earlier 1", "earlier 2"):
        await watcher.say(text)
    chat = await chat_procs(gateway_server.url, "--name", bot, "--room", room)
    await chat.expect(rf"^\* you are in {room}: ")
    await chat.expect(rf"^\* last 2 messages in {room}:$")
    await chat.expect(rf"^{dave}: earlier 1$")
    await chat.expect(rf"^{dave}: earlier 2$")
    await chat.write("mine")
    await watcher.message(bot, "mine")
    await watcher.say("live")
    await chat.expect(rf"^{dave}: live$")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr
    assert said(chat.lines, dave, bot) == [
        f"{dave}: earlier 1",
        f"{dave}: earlier 2",
        f"{bot}: mine",
        f"{dave}: live",
    ]
    assert "mine" not in chat.lines  # no echo of the typed line


async def test_join_shows_the_new_rooms_history_before_its_live_messages(
    gateway_server, chat_procs, observe
):
    """Guards against: `/join ROOM` entering with no history (the web page shows it),
    or showing the history of the room left behind."""
    old, new, bot, dave = unique("old"), unique("new"), unique("bot"), unique("dave")
    in_old = await observe(gateway_server.url, unique("eve"), old)
    await in_old.say("in the old room")
    in_new = await observe(gateway_server.url, dave, new)
    for text in ("new 1", "new 2", "new 3"):
        await in_new.say(text)
    chat = await chat_procs(gateway_server.url, "--name", bot, "--room", old)
    await chat.expect(r"^\* last message in ")
    await chat.write(f"/join {new}")
    await chat.expect(rf"^\* you are in {new}: ")
    await chat.expect(rf"^\* last 3 messages in {new}:$")
    await chat.expect(rf"^{dave}: new 3$")
    await in_new.say("new live")
    await chat.expect(rf"^{dave}: new live$")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr
    assert said(chat.lines, dave) == [
        f"{dave}: {t}" for t in ("new 1", "new 2", "new 3", "new live")
    ]


async def test_a_resume_replays_the_gap_without_showing_the_history_again(
    gateway_server, proxy, chat_procs, observe
):
    """After a drop the room is resumed after the last offset shown: the messages
    missed come once, in order, and the history shown at start is not shown again.

    Guards against: history asked for again on every reconnect (its messages twice),
    or the replay and the history overlapping.
    """
    room, carol, dave = unique("again"), unique("carol"), unique("dave")
    watcher = await observe(gateway_server.url, dave, room)
    await watcher.say("earlier")
    chat = await chat_procs(proxy.url, "--name", carol, "--room", room)
    await chat.expect(rf"^{dave}: earlier$")
    proxy.accepting = False
    proxy.cut()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    await watcher.say("missed")
    proxy.accepting = True
    await chat.expect(r"^\* reconnected$")
    await chat.expect(rf"^{dave}: missed$")
    await watcher.say("after")
    await chat.expect(rf"^{dave}: after$")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr
    assert said(chat.lines, dave) == [f"{dave}: {t}" for t in ("earlier", "missed", "after")]
    assert [line for line in chat.lines if line.startswith("* last ")] == [
        f"* last message in {room}:"
    ]
