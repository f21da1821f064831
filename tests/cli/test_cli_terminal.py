"""`chat` on a terminal (a pseudo-terminal driven by pexpect), against a real gateway."""

from __future__ import annotations

import re
from collections.abc import Callable

from chat_helpers import unique

CLOCK = r"\d\d:\d\d "


async def test_name_prompt_chat_who_and_quit(gateway_server, terminals, observe):
    """Without --name the client asks "Your name: ", then chats; /quit exits 0.

    Guards against: no name prompt, own messages or incoming ones not shown (or shown
    without the clock), /who unanswered, and /quit hanging or exiting non-zero.
    """
    room, pat, dave = unique("term"), unique("pat"), unique("dave")
    watcher = await observe(gateway_server.url, dave, room)
    term = terminals(gateway_server.url, "--room", room)
    await term.expect("Your name:")
    term.sendline(pat)
    await term.expect(rf"\* you are in {room}: ")

    term.sendline("hello from the terminal")
    await watcher.message(pat, "hello from the terminal")
    await term.expect(rf"{CLOCK}{pat}: hello from the terminal")

    await watcher.say("hello terminal")
    await term.expect(rf"{CLOCK}{dave}: hello terminal")

    term.sendline("/who")
    await term.expect(rf"\* members of {room}: ({dave}, {pat}|{pat}, {dave})")
    term.sendline("/quit")
    assert await term.exit_code() == 0


async def test_ctrl_d_exits_0(gateway_server, terminals):
    """Ctrl-D on the input line leaves the chat with exit status 0.

    Guards against: EOF ignored (the client hangs) or reported as an error.
    """
    room = unique("quiet")  # nobody else comes and goes: no line is printed meanwhile
    term = terminals(gateway_server.url, "--name", unique("eve"), "--room", room)
    await term.expect(rf"\* you are in {room}")
    # The input line is drawn again after that line: the terminal is back in raw mode
    # (prompt_toolkit prints in cooked mode, where Ctrl-D would be taken by the tty).
    await term.expect(rf"{room}>")
    term.child.sendcontrol("d")
    assert await term.exit_code() == 0


async def test_taken_name_is_refused_and_asked_again(gateway_server, terminals, observe):
    """A taken name shows the server's error and the name question again.

    Guards against: the client exiting (or hanging) on `name_taken` instead of letting
    the user pick another name.
    """
    taken, free = unique("zoe"), unique("zoe")
    await observe(gateway_server.url, taken)
    term = terminals(gateway_server.url, "--name", taken)
    await term.expect(rf"! .*{taken}.*taken")
    await term.expect("Your name:")
    term.sendline(free)
    await term.expect(r"\* you are in lobby: ")
    term.sendline("/quit")
    assert await term.exit_code() == 0


def showing(text: str, room: str) -> Callable[[list[str]], bool]:
    """The screen shows `text` in a message line, with its clock, and the input line of
    `room` drawn again below it (last, as the screen has settled)."""

    def settled(lines: list[str]) -> bool:
        message = re.compile(rf"{CLOCK}\S+: {re.escape(text)}")
        return any(message.fullmatch(line) for line in lines) and lines[-1] == f"{room}>"

    return settled


async def test_an_own_message_shows_once_as_the_servers_copy(gateway_server, terminals, observe):
    """The typed line goes away; the message shows once, as the server's copy with its
    time (issue 10).

    Guards against: the typed `room> hello bob` left on the screen above the server's
    `09:04 pat: hello bob`, two lines for one message.
    """
    room, pat = unique("once"), unique("pat")
    watcher = await observe(gateway_server.url, unique("dave"), room)
    term = terminals(gateway_server.url, "--name", pat, "--room", room)
    await term.expect(rf"\* you are in {room}: ")
    term.sendline("hello bob")
    await watcher.message(pat, "hello bob")
    lines = await term.screen_lines(showing("hello bob", room))
    assert [line for line in lines if "hello bob" in line] == [
        next(line for line in lines if line.endswith(f"{pat}: hello bob"))
    ]
    term.sendline("/quit")
    assert await term.exit_code() == 0


async def test_a_message_typed_offline_shows_as_pending_then_once_when_sent(
    proxy, terminals, observe, gateway_server
):
    """While the connection is down, a typed message shows as pending above the input
    line; once the server has it, the pending line makes way for the server's copy.

    Guards against: a typed message invisible until it is sent, a pending line left
    beside the server's copy, or the typed line itself left on the screen.
    """
    room, pat = unique("away"), unique("pat")
    watcher = await observe(gateway_server.url, unique("dave"), room)
    term = terminals(proxy.url, "--name", pat, "--room", room)
    await term.expect(rf"\* you are in {room}: ")
    proxy.accepting = False
    proxy.cut()
    await term.expect(r"\* reconnecting\.\.\.")
    await term.expect(rf"{room} \(offline\)>")
    term.sendline("while away")
    lines = await term.screen_lines(lambda lines: "(sending) while away" in lines)
    assert [line for line in lines if "while away" in line] == ["(sending) while away"]
    proxy.accepting = True
    await watcher.message(pat, "while away")
    lines = await term.screen_lines(showing("while away", room))
    assert len([line for line in lines if "while away" in line]) == 1
    term.sendline("/quit")
    assert await term.exit_code() == 0
