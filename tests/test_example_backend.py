"""The worked example of an application's backend (examples/backend/app.py), run as it is
meant to be: its own process beside a real gateway process whose hooks and events point
at it. A user logged in by its cookie is named by it, its refused word is refused, and
every event lands in its SQLite once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from gateway.backend_http import signed_headers
from tests.conftest import JSON_PROTOCOL, WAIT, JsonPeer, TextPeer
from tests.plugins.example_backend import ExampleBackendProcess
from tests.plugins.redis import REDIS_SERVER, RedisBackend
from tests.web_support import Pages, join, message_text, say
from tooling.gateway import GatewayProcess
from tooling.ports import free_port

SECRET = "the-example-backends-secret-of-at-least-32-bytes"
COOKIE = "example_session"  # the example's session cookie


@dataclass
class Example:
    """The example application and a gateway node whose hooks and events point at it."""

    app: ExampleBackendProcess
    node: GatewayProcess


@pytest.fixture
def gateway_port() -> int:
    """The port of the gateway the example's login sends a browser to."""
    return free_port()


@pytest.fixture
def backend(tmp_path: Path, gateway_port: int) -> Iterator[ExampleBackendProcess]:
    """The example application alone, its SQLite file in `tmp_path`."""
    page = f"http://127.0.0.1:{gateway_port}/"
    app = ExampleBackendProcess(tmp_path / "example.sqlite3", SECRET, page).start()
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(params=["memory", "redis"])
def example(
    request: pytest.FixtureRequest, backend: ExampleBackendProcess, gateway_port: int
) -> Iterator[Example]:
    """The example application and a node asking it and telling it (on the in-process
    broker or on Redis), as `make example` and `make example-gateway` run them."""
    extra: tuple[str, ...] = ()
    if request.param == "redis":
        if REDIS_SERVER is None:
            pytest.skip("needs redis-server")
        redis: RedisBackend = request.getfixturevalue("redis_backend")
        assert redis.server is not None
        extra = ("--redis-url", redis.server.url, "--redis-prefix", redis.new_prefix())
    base = backend.base
    node = GatewayProcess(
        gateway_port,
        "--connect-hook-url", f"{base}/hooks/connect",
        "--join-hook-url", f"{base}/hooks/join",
        "--publish-hook-url", f"{base}/hooks/publish",
        "--events-url", f"{base}/events",
        *extra,
        env={"CHAT_BACKEND_SECRET": SECRET},
    )  # fmt: skip
    try:
        yield Example(backend, node.start())
    finally:
        node.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client with no cookie jar of its own: each request says which cookie it sends."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def log_in(http: aiohttp.ClientSession, app: ExampleBackendProcess, name: str) -> str:
    """Log `name` in on the example's form: the Cookie header its answer sets."""
    async with http.post(f"{app.base}/login", data={"name": name}, allow_redirects=False) as answer:
        assert answer.status == 303, await answer.text()
        morsel = answer.cookies[COOKIE]
        assert morsel["httponly"] and morsel["samesite"] == "Lax"
        return f"{COOKIE}={morsel.value}"


async def connect(
    http: aiohttp.ClientSession, node: GatewayProcess, cookie: str | None, **query: str
) -> JsonPeer:
    """A JSON-mode connection to the gateway, sending `cookie` as a browser would."""
    headers = {"Cookie": cookie} if cookie else {}
    ws = await http.ws_connect(node.url, params=query, headers=headers, protocols=(JSON_PROTOCOL,))
    return JsonPeer(ws)


async def stored(http: aiohttp.ClientSession, app: ExampleBackendProcess) -> list[Any]:
    """The events the example lists at GET /events, in the order they arrived."""
    async with http.get(f"{app.base}/events") as answer:
        events: list[Any] = (await answer.json())["events"]
        return events


async def until_stored(
    http: aiohttp.ClientSession, app: ExampleBackendProcess, wanted: list[dict[str, Any]]
) -> list[Any]:
    """Every stored event, once each of `wanted` (events given by some of their fields)
    is among them; AssertionError after 3 * WAIT seconds."""
    events: list[Any] = []
    try:
        async with asyncio.timeout(3 * WAIT):
            while True:
                events = await stored(http, app)
                if len(positions(events, wanted)) >= len(wanted):
                    return events
                await asyncio.sleep(0.1)  # a poll: the node's feed POSTs them when it will
    except TimeoutError:
        raise AssertionError(f"never stored: {wanted}\nstored: {events}") from None


def positions(events: list[Any], wanted: list[dict[str, Any]]) -> list[int]:
    """Where in `events` each of `wanted` is (those found)."""
    return [
        i
        for want in wanted
        for i, event in enumerate(events)
        if all(event.get(k) == v for k, v in want.items())
    ]


async def post_signed(
    http: aiohttp.ClientSession, url: str, payload: Any, now: float | None = None
) -> int:
    """POST `payload` to the example signed as the gateway does (at `now`): the status."""
    body = json.dumps(payload).encode()
    async with http.post(url, data=body, headers=signed_headers(SECRET, body, now)) as answer:
        return answer.status


async def test_a_cookie_login_is_named_by_the_application(
    example: Example, http: aiohttp.ClientSession
) -> None:
    """Guards against a connect hook that does not get the browser's cookie, or whose
    answer (the name, or the refusal and its message) the gateway does not follow."""
    cookie = await log_in(http, example.app, "alice")
    alice = await connect(http, example.node, cookie, room="lobby")
    assert (await alice.expect("welcome"))["name"] == "alice"
    await alice.expect("subscribed", room="lobby")

    stranger = await connect(http, example.node, None, name="mallory")
    refusal = await stranger.expect("error")
    assert refusal["code"] == "unauthorized"
    assert refusal["message"] == f"log in first, at {example.app.base}/"
    assert await stranger.close_code() == 1008
    assert [f["type"] for f in stranger.frames] == ["error"]  # no welcome

    pretender = await connect(http, example.node, cookie, name="bob")  # alice's cookie
    assert (await pretender.expect("error"))["message"] == "you are logged in as alice"
    assert await pretender.close_code() == 1008

    ws = await http.ws_connect(example.node.url, headers={"Cookie": cookie})  # text mode
    await TextPeer(ws).expect_line("* welcome, alice! ...")  # not asked: the cookie names it
    await ws.close()
    await alice.ws.close()


async def test_the_refused_word_is_refused_and_every_event_stored_once(
    example: Example, http: aiohttp.ClientSession
) -> None:
    """Guards against a publish hook refusal that still stores or delivers the message,
    a join hook that is not asked, and events that do not reach the application's
    database, reach it twice or out of their room's order."""
    node = example.node
    alice = await connect(http, node, await log_in(http, example.app, "alice"), room="lobby")
    await alice.expect("subscribed", room="lobby")
    bob = await connect(http, node, await log_in(http, example.app, "bob"), room="lobby")
    await bob.expect("subscribed", room="lobby")

    refused = await alice.request("send", room="lobby", text="cheap SPAM here")
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert refused["message"] == '"spam" is not welcome here'
    ack = await alice.request("send", room="lobby", text="hello bob", id="m1")
    assert ack["type"] == "ack"
    assert (await bob.expect("message", room="lobby"))["text"] == "hello bob"  # not the spam
    staff = await bob.request("join", room="staff")
    assert (staff["code"], staff["message"]) == ("forbidden", "staff is for the staff")
    await bob.ws.close()

    lobby = [
        {"type": "presence", "room": "lobby", "event": "join", "name": "alice"},
        {"type": "presence", "room": "lobby", "event": "join", "name": "bob"},
        {"type": "message", "room": "lobby", "from": "alice", "text": "hello bob",
         "offset": ack["offset"]},
        {"type": "presence", "room": "lobby", "event": "leave", "name": "bob"},
    ]  # fmt: skip
    events = await until_stored(http, example.app, lobby)
    assert positions(events, lobby) == sorted(positions(events, lobby))  # the room's order
    assert not [e for e in events if "spam" in e.get("text", "").casefold()]
    assert not [e for e in events if e.get("room") == "staff"]
    with sqlite3.connect(example.app.db) as db:  # what the application keeps, once each
        rows = db.execute("SELECT id, type FROM events ORDER BY rowid").fetchall()
    assert rows == [(e["id"], e["type"]) for e in events]
    assert len({e["id"] for e in events}) == len(events)

    # The same batch again (as after a node that died before its 2xx): stored once.
    assert await post_signed(http, f"{example.app.base}/events", {"events": events}) == 200
    assert await stored(http, example.app) == events
    await alice.ws.close()


async def test_the_example_refuses_what_the_gateway_did_not_sign_just_now(
    backend: ExampleBackendProcess, http: aiohttp.ClientSession
) -> None:
    """Guards against an example that believes a request without checking its signature
    and its timestamp (a forged or replayed batch would enter its database), or that
    stores a batch posted twice twice."""
    forged = {"events": [{"id": "forged-1", "type": "dm", "ts": 1, "from": "a", "to": "b",
                          "text": "forged"}]}  # fmt: skip
    url = f"{backend.base}/events"
    body = json.dumps(forged).encode()
    unsigned = {"Content-Type": "application/json", "X-Chat-Timestamp": str(int(time.time()))}
    async with http.post(url, data=body, headers=unsigned) as answer:
        assert answer.status == 401
    wrong = signed_headers("another-secret-of-at-least-32-bytes!", body)
    async with http.post(url, data=body, headers=wrong) as answer:
        assert answer.status == 401
    assert await post_signed(http, url, forged, now=time.time() - 301) == 401  # a replay
    assert await stored(http, backend) == []
    assert await post_signed(http, url, forged) == 200  # the same, signed just now
    assert await post_signed(http, url, forged) == 200  # and again: a retry
    assert [e["id"] for e in await stored(http, backend)] == ["forged-1"]


@pytest.mark.parametrize("example", ["memory"], indirect=True)
async def test_the_readmes_browser_flow(
    example: Example, http: aiohttp.ClientSession, pages: Pages
) -> None:
    """Guards against the README's walk-through not working in a browser: the login
    form's cookie, set by the application's port, must go with the page's WebSocket to
    the gateway's port (cookies are per host), and a refusal must show its words."""
    page = await pages.open(f"{example.app.base}/", "example")
    await page.locator("input[name=name]").fill("carol")
    await page.locator("button").click()
    await page.wait_for_url(example.node.url.replace("ws://", "http://").removesuffix("ws"))
    await join(page, "carol")  # the connect hook knows carol by the cookie
    await say(page, "hello from the page")
    await expect(message_text(page, "hello from the page")).to_have_count(1)
    await say(page, "more spam")
    failed = page.locator("#pending .message.failed .send-error")
    await expect(failed).to_have_text('Not sent: "spam" is not welcome here')
    wanted = {"type": "message", "from": "carol", "text": "hello from the page"}
    await until_stored(http, example.app, [wanted])
