"""`chat` in pipe mode (stdin is not a terminal), against a real gateway process."""

from __future__ import annotations

import sys
from pathlib import Path

from chat_helpers import unique

CHAT_SCRIPT = str(Path(sys.executable).parent / "chat")


async def test_piped_lines_are_sent_as_separate_messages_then_exit_0(
    gateway_server, chat_procs, observe
):
    """`printf 'hi\\nthere\\n' | chat --name bot` must deliver two messages and exit 0.

    Guards against: lines glued into one message, exiting before the sends are acked
    (losing the tail of the input), or a non-zero exit that breaks scripts.
    """
    room, bot = unique("pipe"), unique("bot")
    watcher = await observe(gateway_server.url, unique("watch"), room)
    chat = await chat_procs(
        gateway_server.url, "--name", bot, "--room", room, command=[CHAT_SCRIPT]
    )
    await chat.write("hi", "there")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr
    await watcher.message(bot, "there")
    assert watcher.texts(bot) == ["hi", "there"]


async def test_two_clients_see_messages_presence_and_direct_messages(gateway_server, chat_procs):
    """Two pipe clients in one room see each other's messages, joins, leaves and DMs.

    Guards against: dropping other people's messages or presence, a wrong line format
    (`name: text`, `* name joined room`, `[dm] name: text`, `[dm -> name] text`), and
    a command answer (/who) lost because the client exited before it arrived.
    """
    room, amy, ben = unique("room"), unique("amy"), unique("ben")
    a = await chat_procs(gateway_server.url, "--name", amy, "--room", room)
    await a.expect(rf"^\* you are in {room}: {amy}$")
    b = await chat_procs(gateway_server.url, "--name", ben, "--room", room)
    await b.expect(rf"^\* you are in {room}: ")
    await a.expect(rf"^\* {ben} joined {room}$")

    await b.write("hi amy")
    await a.expect(rf"^{ben}: hi amy$")
    await a.write("hi ben")
    await b.expect(rf"^{amy}: hi ben$")

    await b.write(f"/msg {amy} psst")
    await a.expect(rf"^\[dm\] {ben}: psst$")
    await b.expect(rf"^\[dm -> {amy}\] psst$")

    await b.end_input()
    assert await b.wait() == 0, b.stderr
    await a.expect(rf"^\* {ben} left {room}$")

    await a.write("/who")
    await a.end_input()
    assert await a.wait() == 0, a.stderr
    await a.expect(rf"^\* members of {room}: {amy}$")


async def test_slash_commands_in_pipe_mode(gateway_server, chat_procs, observe):
    """`//text` sends `/text`; an unknown command is a local `!` line on stderr, not a
    message, and makes the exit code 1 (a line did not go out).

    Guards against: slash lines sent as chat text, or `//` escapes dropped.
    """
    room, bot = unique("slash"), unique("bot")
    watcher = await observe(gateway_server.url, unique("watch"), room)
    chat = await chat_procs(gateway_server.url, "--name", bot, "--room", room)
    await chat.write("/nonsense", "//not a command", "/history 5")
    await chat.end_input()
    assert await chat.wait() == 1, chat.stderr
    await chat.expect_error(r"^! unknown command /nonsense")
    await chat.expect(rf"^\* last message in {room}:$")
    await chat.expect(rf"^{bot}: /not a command$")
    await watcher.message(bot, "/not a command")
    assert watcher.texts(bot) == ["/not a command"]


async def test_a_message_the_server_refuses_exits_1_with_the_reason_on_stderr(
    gateway_server, chat_procs, observe
):
    """`python3 -c "print('z'*5000)" | chat --name bot` exits 1 and says why on stderr;
    the lines around it still go out.

    Guards against: a CI bot told "success" (exit 0) when its message was refused, and
    the refusal printed on stdout among the chat, where a script does not look.
    """
    room, bot = unique("long"), unique("bot")
    watcher = await observe(gateway_server.url, unique("watch"), room)
    chat = await chat_procs(gateway_server.url, "--name", bot, "--room", room)
    await chat.write("before", "z" * 5000, "after")
    await chat.end_input()
    assert await chat.wait() == 1, chat.stderr
    await chat.expect_error(r"^! a message is at most 4000 characters")
    await watcher.message(bot, "after")
    assert watcher.texts(bot) == ["before", "after"]
    assert not [line for line in chat.lines if line.startswith("!")], chat.lines


async def test_a_direct_message_to_nobody_exits_1_with_the_reason_on_stderr(
    gateway_server, chat_procs
):
    """`/msg nobody hi` piped in: the server's refusal on stderr, exit 1.

    Guards against: exit 0 although the direct message reached no one.
    """
    nobody = unique("nobody")
    chat = await chat_procs(gateway_server.url, "--name", unique("bot"))
    await chat.write(f"/msg {nobody} hi")
    await chat.end_input()
    assert await chat.wait() == 1, chat.stderr
    await chat.expect_error(rf"^! .*{nobody}")


async def test_more_lines_than_the_rate_limit_burst_all_arrive(gateway_server, chat_procs, observe):
    """30 piped lines (the server allows bursts of 20, then 10/s) all arrive, in order.

    Guards against: lines lost to `rate_limited` errors (they must be sent again later)
    and the client being closed for hammering the server.
    """
    room, bot = unique("burst"), unique("bot")
    watcher = await observe(gateway_server.url, unique("watch"), room)
    chat = await chat_procs(gateway_server.url, "--name", bot, "--room", room)
    lines = [f"line {n}" for n in range(30)]
    await chat.write(*lines)
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr
    await watcher.message(bot, "line 29")
    assert watcher.texts(bot) == lines


async def test_name_taken_exits_1_with_the_reason_on_stderr(gateway_server, chat_procs, observe):
    """A taken name ends pipe mode with exit 1 and the server's reason on stderr.

    Guards against: a script hanging or reporting success when it never got in.
    """
    name = unique("dup")
    await observe(gateway_server.url, name)
    chat = await chat_procs(gateway_server.url, "--name", name)
    await chat.end_input()
    assert await chat.wait() == 1
    assert "taken" in chat.stderr


async def test_gives_up_with_exit_1_when_sends_are_never_acked(chat_procs, proxy):
    """With the server unreachable after stdin ends, pipe mode exits 1 after --ack-timeout,
    naming what went unanswered.

    Guards against: a script hanging forever, exiting 0 although lines were lost, or a
    give-up line that miscounts (a /who counted as no message at all).
    """
    chat = await chat_procs(proxy.url, "--name", unique("bot"), "--ack-timeout", "1")
    await chat.expect(r"^\* you are in lobby")
    proxy.accepting = False
    proxy.cut()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    await chat.write("into the void", "/who")
    await chat.end_input()
    assert await chat.wait() == 1
    assert "gave up: no answer from the server in 1 s to 1 message, /who" in chat.stderr


async def test_join_moves_to_the_new_room_and_leaves_the_old(gateway_server, chat_procs, observe):
    """`/join ROOM` enters ROOM, leaves the current room, and messages go to ROOM.

    Guards against: staying in the old room (still a member, still hearing it), or
    sending typed lines to the old room after the switch.
    """
    old, new, bot = unique("old"), unique("new"), unique("bot")
    in_old = await observe(gateway_server.url, unique("watch"), old)
    in_new = await observe(gateway_server.url, unique("watch"), new)
    chat = await chat_procs(gateway_server.url, "--name", bot, "--room", old)
    await chat.expect(rf"^\* you are in {old}: ")
    await chat.write(f"/join {new}", "hello new room")
    await chat.expect(rf"^\* you are in {new}: ")
    await in_new.message(bot, "hello new room")
    await in_old.until(lambda f: f["type"] == "presence" and f["event"] == "leave")
    await in_old.say("anyone?")
    await chat.write("/who")
    await chat.expect(rf"^\* members of {new}: ")
    assert not any("anyone?" in line for line in chat.lines)
    assert in_old.texts(bot) == []


async def test_a_url_without_the_ws_path_says_the_path_is_probably_missing_it(
    gateway_server, chat_procs
):
    """`chat --url ws://HOST:PORT/` (the page, not /ws): exit 1 with a hint on stderr.

    Guards against: aiohttp's raw `200, message='Invalid response status'` as the only
    explanation.
    """
    page = gateway_server.url.removesuffix("/ws") + "/"
    chat = await chat_procs(page, "--name", unique("bot"))
    await chat.end_input()
    assert await chat.wait() == 1
    assert "the path is probably missing /ws" in chat.stderr, chat.stderr
    assert f"--url {gateway_server.url}" in chat.stderr, chat.stderr
