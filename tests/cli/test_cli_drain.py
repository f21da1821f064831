"""`ChatClient.drain`, the wait for the server's answers before pipe mode (or /quit)
exits, against a gateway that answers when the test says so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from chat_helpers import WAIT

from cli.client import ChatClient, ClientConfig, describe

# How many loop iterations after the answer is written the drain may start: the
# iteration that lost the answer lies in this range (the reader's wake-up is a hop
# or two after the bytes arrive), and past it the answer is in before the drain looks.
START_OFFSETS = range(8)

Asked = asyncio.Queue[tuple[web.WebSocketResponse, dict[str, Any]]]


@pytest.fixture
async def timed_gateway(aiohttp_server: Any) -> AsyncIterator[tuple[str, Asked]]:
    """A gateway that welcomes Ann into lobby and hands each frame she sends to the test
    (the connection and the frame), so that the test writes the answer when it wants."""
    asked: Asked = asyncio.Queue()

    async def gateway(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat.v1.json",))
        await ws.prepare(request)
        await ws.send_json({"type": "welcome", "name": "Ann", "node": "t", "session": "s"})
        await ws.send_json({"type": "subscribed", "room": "lobby", "members": ["Ann"]})
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                asked.put_nowait((ws, json.loads(msg.data)))
        return ws

    app = web.Application()
    app.router.add_get("/ws", gateway)
    server = await aiohttp_server(app)
    yield str(server.make_url("/ws")), asked


async def test_an_answer_read_as_the_drain_starts_ends_the_drain(
    timed_gateway: tuple[str, Asked],
) -> None:
    """The drain returns as soon as the last answer is in, whichever loop iteration the
    reader hands it over in, relative to the drain's first look at the queue.

    Guards against: the drain's wait for an answer starting one loop iteration after
    the drain saw the queue non-empty, and forgetting (clearing) an answer the reader
    handed over in between: pipe mode then sat out --ack-timeout and gave up with
    "0 message(s) not acknowledged" (once in CI, after `/who` and the end of input).
    """
    url, asked = timed_gateway
    client = ChatClient(ClientConfig(url=url, name="Ann"))
    async with asyncio.timeout(WAIT):
        await client.start()
    try:
        for offset in START_OFFSETS:
            client.who()
            async with asyncio.timeout(WAIT):
                ws, frame = await asked.get()
            members = {"type": "members", "room": "lobby", "members": ["Ann"]}
            await ws.send_json(members | {"ref": frame["ref"]})
            for _ in range(offset):
                await asyncio.sleep(0)  # one loop iteration, no time
            try:  # the answer is in: the drain ends at once, long before its idle timeout
                async with asyncio.timeout(WAIT / 2):
                    assert await client.drain(WAIT)
            except TimeoutError:
                pytest.fail(f"the answer was missed by a drain started {offset} iterations later")
            assert client.unanswered == ()
    finally:
        await client.close()


async def test_what_is_left_unanswered_is_named(timed_gateway: tuple[str, Asked]) -> None:
    """A drain that gives up names what it waited for: messages, direct messages and
    commands, oldest first.

    Guards against: a give-up line counting commands as "messages not acknowledged",
    or saying 0 when it waited for a `/who`.
    """
    url, asked = timed_gateway
    client = ChatClient(ClientConfig(url=url, name="Ann"))
    async with asyncio.timeout(WAIT):
        await client.start()
    try:
        client.say("one")
        client.say("two")
        client.who()
        client.direct("Bob", "psst")
        async with asyncio.timeout(WAIT):
            await asked.get()  # the first send is out; the gateway never answers it
        assert not await client.drain(0.05)
        assert client.unanswered == ("message", "message", "/who", "direct message")
        assert describe(client.unanswered) == "2 messages, /who, 1 direct message"
    finally:
        await client.close()


def test_describe_counts_each_kind_once() -> None:
    """Guards against a long list for many unanswered lines of one kind."""
    assert describe(("/who", "/who", "message")) == "/who (2 times), 1 message"
    assert describe(()) == "nothing"
