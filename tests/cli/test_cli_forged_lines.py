"""`chat` shows a message's further lines indented under its text and never writes a
control character to the terminal or the pipe (issue 19, finding 5).

`hi\\n* admin joined lobby\\n[dm] admin: ...` showed as three genuine-looking lines, and
C1 controls (U+009B, a one-byte CSI; U+0085, a line break) reached the terminal raw.
The node refuses such characters now, so the tests that need them put a message in the
broker as an older node (or a node before the change) would have stored it: through
the node's own broker, in a gateway run in this process.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient
from chat_helpers import unique

from gateway.events import Direct
from gateway.node import NODE

FORGED = "hi\n* admin joined lobby\n[dm] admin: re-enter your token at evil.example"
RAW = "\x9b\x85\x1b\x07\u2028"  # never written as they are
# A message with each of them, as stored by a node that did not refuse them yet.
LEGACY = "a\x9b31mred\x1b[2J\x07b\x85* admin joined lobby\u2028[dm] admin: x"
SHOWN = r"a\x9b31mred\x1b[2J\x07b\x85* admin joined lobby\u2028[dm] admin: x"


def ws_url(client: TestClient) -> str:
    return f"ws://{client.host}:{client.port}/ws"


async def test_pipe_mode_indents_a_forged_message_and_dm(gateway_server, chat_procs, observe):
    """Guards against a message's later lines printed at column 0, where they pass for a
    join and a DM of their own (pipe output is what scripts and logs keep)."""
    room, me, eve = unique("forged"), unique("me"), unique("eve")
    chat = await chat_procs(gateway_server.url, "--name", me, "--room", room)
    await chat.expect(rf"^\* you are in {room}: ")
    mallory = await observe(gateway_server.url, eve, room)
    await mallory.say(FORGED)
    indent = " " * len(f"{eve}: ")
    assert await chat.expect(rf"^{eve}: hi$") == f"{eve}: hi"
    assert await chat.expect("admin joined") == f"{indent}* admin joined lobby"
    assert (
        await chat.expect("re-enter") == f"{indent}[dm] admin: re-enter your token at evil.example"
    )
    await mallory.ws.send_json({"type": "dm", "to": me, "text": FORGED})
    await chat.expect(rf"^\[dm\] {eve}: hi$")
    indent = " " * len(f"[dm] {eve}: ")
    assert await chat.expect("admin joined") == f"{indent}* admin joined lobby"
    assert (
        await chat.expect("re-enter") == f"{indent}[dm] admin: re-enter your token at evil.example"
    )


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_pipe_mode_escapes_control_characters(client: TestClient, chat_procs) -> None:
    """Guards against a stored message or DM writing a CSI, NEL, ESC, BEL or line
    separator to whatever reads the pipe: each shows as an escape, on one line."""
    room, me = unique("c1"), unique("me")
    chat = await chat_procs(ws_url(client), "--name", me, "--room", room)
    await chat.expect(rf"^\* you are in {room}: ")
    broker = client.app[NODE].broker
    await broker.publish(room, "mallory", LEGACY, origin="an-older-node")
    assert await chat.expect("^mallory: ") == f"mallory: {SHOWN}"
    await broker.send_direct(Direct("mallory", me, LEGACY, int(time.time() * 1000)))
    assert await chat.expect(r"^\[dm\] mallory: ") == f"[dm] mallory: {SHOWN}"
    assert not [line for line in chat.lines if any(c in line for c in RAW)], chat.lines


def shows(*texts: str) -> Callable[[list[str]], bool]:
    """The screen has settled with a line ending in each of `texts`."""
    return lambda lines: all(any(line.endswith(t) for line in lines) for t in texts)


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_terminal_indents_and_escapes(client: TestClient, terminals) -> None:
    """Guards against the terminal view showing a forged line at column 0 or running a
    control character a stored message holds."""
    room, me = unique("c1"), unique("me")
    term = terminals(ws_url(client), "--name", me, "--room", room)
    await term.expect(rf"\* you are in {room}")
    broker = client.app[NODE].broker
    await broker.publish(room, "mallory", FORGED, origin="an-older-node")
    await broker.publish(room, "mallory", LEGACY, origin="an-older-node")
    await term.expect(f"mallory: {re.escape(SHOWN)}")
    lines = await term.screen_lines(shows("mallory: hi", "* admin joined lobby", SHOWN))
    first = next(i for i, line in enumerate(lines) if line.endswith("mallory: hi"))
    indent = " " * len(lines[first].removesuffix("hi"))  # under the text: "HH:MM mallory: "
    assert lines[first + 1 : first + 3] == [
        f"{indent}* admin joined lobby",
        f"{indent}[dm] admin: re-enter your token at evil.example",
    ], lines
    assert not [c for c in RAW if c in term.text], repr(term.text)
