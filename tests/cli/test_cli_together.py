"""Issue 2's "done when": two `chat` clients and websocat (text mode) talk on one node."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chat_helpers import ChatProcess, GatewayProcess

WEBSOCAT = shutil.which("websocat") or str(Path(sys.executable).parent / "websocat")


@pytest.mark.skipif(not Path(WEBSOCAT).exists(), reason="websocat is a dev dependency")
async def test_two_chat_clients_and_websocat_talk(
    gateway_server: GatewayProcess, chat_procs: Callable[..., Any]
) -> None:
    """Guards against the three ways of chatting drifting apart: every line typed in
    one of them shows in the other two, with presence as system lines."""
    url = gateway_server.url
    proc = await asyncio.create_subprocess_exec(
        WEBSOCAT,
        "--text",
        f"{url}?room=together",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    wendy = ChatProcess(proc)
    try:
        await wendy.expect("^Your name:$")
        await wendy.write("wendy")
        await wendy.expect(r"^\* you are in together; members: wendy$")
        ann = await chat_procs(url, "--name", "ann", "--room", "together")
        await wendy.expect(r"^\* ann joined together$")
        bob = await chat_procs(url, "--name", "bob", "--room", "together")
        await ann.expect(r"^\* bob joined together$")

        await wendy.write("hello from websocat")
        await ann.expect("^wendy: hello from websocat$")
        await bob.expect("^wendy: hello from websocat$")
        await ann.write("hi wendy")
        await wendy.expect("^ann: hi wendy$")
        await bob.expect("^ann: hi wendy$")
        await bob.write("/msg wendy a secret")
        await wendy.expect(r"^\[dm\] bob: a secret$")
        await wendy.write("/who")
        await wendy.expect(r"^\* members of together: ann, bob, wendy$")

        await bob.end_input()
        assert await bob.wait() == 0
        await wendy.expect(r"^\* bob left together$", timeout=10)
        assert not [line for line in ann.lines if "hello from websocat" in line][1:]
    finally:
        await wendy.stop()
