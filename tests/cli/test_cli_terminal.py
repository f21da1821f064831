"""`chat` on a terminal (a pseudo-terminal driven by pexpect), against a real gateway."""

from __future__ import annotations

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
