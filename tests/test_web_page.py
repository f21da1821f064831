"""The web chat page (issue #5) in a real browser: the system's Chromium under Playwright.

Each test opens pages as different people (a browser context each), saves a screenshot
of every page into test-artifacts/, and fails if a page logged an error or opened a
dialog. Every wait is bounded (Playwright's expect, WAIT_MS); nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from playwright.async_api import expect

from gateway import http as gateway_http
from gateway.app import create_app
from gateway.auth import mint
from gateway.credentials import offered_subprotocols
from gateway.events import Direct
from gateway.node import NODE
from tests.conftest import JSON_PROTOCOL, TEST_SETTINGS, JsonPeer, join_json
from tests.plugins.redis import REDIS_SERVER, RedisBackend
from tests.web_support import (
    Pages,
    join,
    message_text,
    no_more_websockets,
    received_frames,
    record_handshakes,
    say,
    shown_texts,
    websocket_urls,
)
from tooling.gateway import GatewayProcess
from tooling.tcp_proxy import TcpProxy

XSS = "<img src=x onerror=alert(1)><script>window.pwned=1</script>"
XSS_NAME = "<img src=y onerror=alert(2)>"

Cluster = Callable[..., Awaitable[list[TestClient]]]


@pytest.fixture
async def node(aiohttp_client: Any) -> TestClient:
    """One gateway node on the in-process broker."""
    client: TestClient = await aiohttp_client(create_app(TEST_SETTINGS))
    return client


@pytest.fixture
async def cluster(aiohttp_client: Any, redis_backend: RedisBackend) -> Cluster:
    """`n` in-process nodes sharing one Redis chat (node ids n0, n1, ...)."""
    prefix = redis_backend.new_prefix()

    async def start(n: int) -> list[TestClient]:
        clients = []
        for i in range(n):
            settings, broker = redis_backend.broker(replace(TEST_SETTINGS, node_id=f"n{i}"), prefix)
            clients.append(await aiohttp_client(create_app(settings, broker)))
        return clients

    return start


def page_url(client: TestClient) -> str:
    return str(client.make_url("/"))


async def test_two_pages_on_two_nodes_chat_through_redis(cluster: Cluster, pages: Pages) -> None:
    """Guards against a page that does not speak the protocol: no history on entering
    a room, presence or messages not shown, own messages not marked, direct messages and
    unread counts lost; and against nodes that do not share one chat."""
    n0, n1 = await cluster(2)
    early = await join_json(n1, "early-bird")
    await early.request("send", room="lobby", text="said before the pages came")
    await early.ws.close()

    alice = await pages.open(page_url(n0), "alice")
    await join(alice, "alice")
    await expect(message_text(alice, "said before the pages came")).to_have_count(1)
    bob = await pages.open(page_url(n1), "bob")
    await join(bob, "bob")
    await expect(alice.locator("#me-node")).to_have_text("on node n0")
    await expect(bob.locator("#me-node")).to_have_text("on node n1")

    for page in (alice, bob):  # presence: each sees the other, live or on entering
        members = page.get_by_test_id("members")
        await expect(members.get_by_role("button", name="alice")).to_be_visible()
        await expect(members.get_by_role("button", name="bob")).to_be_visible()

    await say(alice, "hello from node zero")
    received = bob.get_by_test_id("messages").locator(".message", has_text="hello from node zero")
    await expect(received).to_have_count(1)
    await expect(received).to_have_attribute("data-from", "alice")
    await expect(received).not_to_have_class(re.compile(r"\bown\b"))
    await expect(received.locator(".sender")).to_have_text("alice")
    await expect(received.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    sent = alice.get_by_test_id("messages").locator(".message.own", has_text="hello from node")
    await expect(sent).to_have_count(1)

    await say(bob, "and hello from node one")
    await expect(message_text(alice, "and hello from node one")).to_have_count(1)
    await expect(alice.locator("#pending .message")).to_have_count(0)
    assert await shown_texts(alice) == [
        "said before the pages came",
        "hello from node zero",
        "and hello from node one",
    ]

    # A direct message: bob picks alice in the member list; alice gets an unread count.
    await bob.get_by_test_id("members").get_by_role("button", name="alice").click()
    await say(bob, "a secret for alice")
    dm_entry = alice.locator('#dms [data-peer="bob"]')
    await expect(dm_entry.locator(".badge")).to_have_text("1")
    await dm_entry.click()
    await expect(message_text(alice, "a secret for alice")).to_have_count(1)
    await expect(dm_entry.locator(".badge")).to_have_count(0)

    # A room's unread count, then its history on entering it.
    await bob.get_by_test_id("room-input").fill("dev")
    await bob.get_by_test_id("room-input").press("Enter")
    await expect(bob.get_by_role("heading", name="# dev")).to_be_visible()
    await say(bob, "bob in dev")
    await expect(bob.locator("#pending .message")).to_have_count(0)
    await alice.get_by_test_id("rooms").locator('[data-room="lobby"]').click()
    await say(alice, "unread for bob")
    lobby = bob.get_by_test_id("rooms").locator('[data-room="lobby"]')
    await expect(lobby.locator(".badge")).to_have_text("1")
    await lobby.click()
    await expect(lobby.locator(".badge")).to_have_count(0)
    await expect(message_text(bob, "unread for bob")).to_have_count(1)
    await alice.get_by_test_id("room-input").fill("dev")
    await alice.get_by_test_id("room-input").press("Enter")
    await expect(message_text(alice, "bob in dev")).to_have_count(1)

    await pages.close(bob)  # bob goes: his page's connection closes
    await alice.get_by_test_id("rooms").locator('[data-room="lobby"]').click()
    await expect(alice.get_by_test_id("members").get_by_role("button", name="bob")).to_have_count(0)


async def test_html_and_script_in_messages_show_as_text_and_run_nothing(
    node: TestClient, pages: Pages
) -> None:
    """Guards against rendering wire data as HTML (innerHTML): a message, a sender's name
    or a direct message that is markup must show literally and never run. The page is
    loaded with its CSP switched off, so the rendering alone is what is tested."""
    page = await pages.open(page_url(node), "victim", bypass_csp=True)
    await join(page, "victim")
    mallory = await join_json(node, XSS_NAME)
    await mallory.request("send", room="lobby", text=XSS)
    await mallory.request("dm", to="victim", text=XSS)
    await say(page, XSS)  # the page's own message, shown from the outbox and then live

    await expect(page.locator("#pending .message")).to_have_count(0)
    await expect(message_text(page, XSS)).to_have_count(2)
    members = page.get_by_test_id("members")
    await expect(members.get_by_role("button", name=XSS_NAME)).to_be_visible()
    sender = page.get_by_test_id("messages").locator(".sender", has_text=XSS_NAME)
    await expect(sender).to_have_count(1)
    await page.locator("#dms .nav-button").click()
    await expect(message_text(page, XSS)).to_have_count(1)

    assert await page.locator("img, script:not([src])").count() == 0
    assert await page.evaluate("typeof window.pwned") == "undefined"
    assert pages.log(page).dialogs == []


async def test_control_characters_in_a_stored_message_show_as_u_fffd_in_its_bubble(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a message stored before C1 controls and line separators were
    refused (or by an older node) breaking a line or hiding characters on the page: in a
    room and in a DM, each shows as U+FFFD, in the one message that holds it."""
    page = await pages.open(page_url(node), "victim")
    await join(page, "victim")
    stored = "hi\u2028* admin joined lobby\x85[dm] admin: x\x9b2J\u2029!"
    shown = "hi\ufffd* admin joined lobby\ufffd[dm] admin: x\ufffd2J\ufffd!"
    broker = node.app[NODE].broker
    await broker.publish("lobby", "mallory", stored, origin="an-older-node")
    bodies = page.get_by_test_id("messages").locator(".message .text")
    await expect(bodies).to_have_count(1)
    assert await shown_texts(page) == [shown]
    await broker.send_direct(Direct("mallory", "victim", stored, int(time.time() * 1000)))
    await page.locator("#dms .nav-button").click()
    await expect(page.locator("#conversation-title")).to_have_text("@ mallory")
    await expect(bodies).to_have_count(1)
    assert await shown_texts(page) == [shown]
    assert pages.log(page).errors == []


@pytest.mark.parametrize("death", ["kill", "stop"])
async def test_the_page_survives_its_node_being_killed_and_restarted(
    death: str, redis_backend: RedisBackend, pages: Pages
) -> None:
    """Guards against a page that does not come back when its node goes, killed (a
    network drop, no close frame) or stopped (close 1001), that loses what was said
    meanwhile on another node, shows something twice after resuming, or drops a
    message typed while it was away."""
    if REDIS_SERVER is None or redis_backend.server is None:
        pytest.skip("needs a real redis-server shared by two gateway processes")
    shared = (
        "--redis-url", redis_backend.server.url, "--redis-prefix", redis_backend.new_prefix(),
        "--presence-timeout", "3",
    )  # fmt: skip
    doomed = GatewayProcess(None, *shared, "--node-id", "doomed")  # its port stays fixed
    other = GatewayProcess(None, *shared, "--node-id", "other")
    try:
        await asyncio.gather(asyncio.to_thread(doomed.start), asyncio.to_thread(other.start))
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                other.url, params={"name": "carol"}, protocols=(JSON_PROTOCOL,)
            )
            carol = JsonPeer(ws)
            await carol.expect("subscribed")
            await carol.request("send", room="lobby", text="before dave came")

            page = await pages.open(f"http://127.0.0.1:{doomed.port}/", "dave")
            await join(page, "dave")
            await expect(message_text(page, "before dave came")).to_have_count(1)
            await say(page, "dave was here")
            await carol.expect("message", text="dave was here")
            await expect(page.locator("#pending .message")).to_have_count(0)  # acked

            await asyncio.to_thread(doomed.kill if death == "kill" else doomed.stop)
            await expect(page.get_by_test_id("status")).to_have_text("Reconnecting")
            missed = [f"said while dave's node was down {i}" for i in range(3)]
            for text in missed:
                assert (await carol.request("send", room="lobby", text=text))["type"] == "ack"
            await say(page, "typed while the node was down")
            await expect(page.locator("#pending .message")).to_have_count(1)

            await asyncio.to_thread(doomed.start)
            await expect(page.get_by_test_id("status")).to_have_text("Connected", timeout=15000)
            await carol.expect("message", text="typed while the node was down")
            await carol.request("send", room="lobby", text="welcome back")
            await expect(message_text(page, "welcome back")).to_have_count(1)
            await expect(page.locator("#pending .message")).to_have_count(0)
            assert await shown_texts(page) == [
                "before dave came",
                "dave was here",
                *missed,
                "typed while the node was down",
                "welcome back",
            ]
            typed = [f for f in carol.frames if f.get("text") == "typed while the node was down"]
            assert len(typed) == 1
            await ws.close()
            await pages.close(page)  # before its node stops: no reconnect at teardown
    finally:
        await asyncio.gather(asyncio.to_thread(doomed.close), asyncio.to_thread(other.close))


async def test_a_send_whose_ack_was_lost_is_retried_with_its_id_and_lands_once(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a page that, after a reconnect, sends again a message the server
    had stored (its ack lost with the connection) without its id, so everyone sees it
    twice; or that shows it twice itself (once replayed, once as its own pending copy)."""
    proxy = await TcpProxy(node.port).start()  # type: ignore[arg-type]
    try:
        page = await pages.open(f"http://127.0.0.1:{proxy.port}/", "sender")
        await join(page, "sender")
        watcher = await join_json(node, "watcher")
        proxy.drop_downstream = True  # the server hears the page; the page hears nothing
        await say(page, "stored, but the ack is lost")
        await watcher.expect("message", text="stored, but the ack is lost")
        await expect(page.locator("#pending .message")).to_have_count(1)

        proxy.drop_downstream = False
        proxy.cut()  # the page reconnects, resumes, and sends its pending message again
        await expect(page.locator("#pending .message")).to_have_count(0)
        await expect(message_text(page, "stored, but the ack is lost")).to_have_count(1)
        await watcher.request("send", room="lobby", text="marker")
        await expect(message_text(page, "marker")).to_have_count(1)
        twice = [f for f in watcher.frames if f.get("text") == "stored, but the ack is lost"]
        assert len(twice) == 1
    finally:
        await proxy.close()


class ScriptedServer:
    """A stand-in for a gateway that repeats itself, as an at-least-once server could:
    the first connection sends a message twice and closes 1001; the second (which must
    resume with `since` and `session`) replays that message again, then closes 4000."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.offered: list[list[str]] = []  # the subprotocols of each connection
        self.taken_over = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", gateway_http.index)
        app.router.add_get("/static/{name}", gateway_http.static_file)
        app.router.add_get("/ws", self.serve)
        return app

    @staticmethod
    def message(n: int) -> dict[str, Any]:
        return frame(
            "message", room="lobby", text=f"message {n}", offset=f"e-{n}", ts=1_700_000_000_000 + n
        ) | {"from": "srv"}

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=(JSON_PROTOCOL,))
        await ws.prepare(request)
        self.queries.append(dict(request.query))
        self.offered.append(offered_subprotocols(request))
        name = request.query["name"]
        await ws.send_json(frame("welcome", name=name, node="fake", session="s3cret", protocol=1))
        if len(self.queries) == 1:
            await ws.send_json(frame("subscribed", room="lobby", members=["srv"], offset="e-2"))
            async for msg in ws:
                asked = msg.json()
                if asked["type"] == "history":
                    history = [self.message(1), self.message(2)]
                    await ws.send_json(
                        frame("history", room="lobby", ref=asked["ref"], messages=history)
                    )
                    await ws.send_json(self.message(3))
                    await ws.send_json(self.message(3))  # again
                    await ws.close(code=1001, message=b"going away")
        else:
            await ws.send_json(
                frame("subscribed", room="lobby", members=["srv"], offset="e-4", recovered=True)
            )
            await ws.send_json(self.message(3))  # shown already
            await ws.send_json(self.message(4))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.taken_over.wait(), 10)
            await ws.close(code=4000, message=b"session taken over")
        return ws


def frame(kind: str, **fields: Any) -> dict[str, Any]:
    """A server frame; `subscribed` is not recovered unless told."""
    if kind == "subscribed":
        fields.setdefault("recovered", False)
    return {"type": kind, **fields}


async def test_the_page_shows_each_offset_once_and_stops_after_a_takeover(
    aiohttp_client: Any, pages: Pages
) -> None:
    """Guards against a page that trusts the server never to repeat itself (a message
    delivered twice, a replay overlapping what was shown: each offset is shown once),
    that resumes without `since` and `session`, or that reconnects after close 4000
    (two tabs would then take the name from each other forever)."""
    server = ScriptedServer()
    client = await aiohttp_client(server.app())
    page = await pages.open(page_url(client), "repeated")
    await join(page, "pat")
    await expect(message_text(page, "message 4")).to_have_count(1)
    assert await shown_texts(page) == [f"message {n}" for n in (1, 2, 3, 4)]
    assert len(server.queries) == 2
    assert server.queries[1] == {"name": "pat", "room": "lobby", "since": "e-3"}
    assert server.offered == [[JSON_PROTOCOL], [JSON_PROTOCOL, "chat.session.s3cret"]]

    server.taken_over.set()
    await expect(page.get_by_test_id("status")).to_have_text("Offline")
    await expect(page.locator("#banner")).to_contain_text("opened in another window")
    with pytest.raises(AssertionError):  # short and bounded: no new connection comes
        await expect(page.get_by_test_id("status")).not_to_have_text("Offline", timeout=1000)
    assert len(server.queries) == 2


async def test_the_page_has_a_strict_content_security_policy(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a page served without its CSP (or with inline code that a strict
    CSP would break), and against static files the browser could sniff as another type."""
    response = await node.get("/")
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "connect-src 'self' ws: wss:",
        "frame-ancestors 'none'",
        "script-src 'self'",
        "style-src 'self'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        static = await node.get(path)
        assert static.status == 200 and static.content_type == kind
        assert static.headers["X-Content-Type-Options"] == "nosniff"
    assert (await node.get("/static/..%2Fhttp.py")).status == 404
    assert (await node.get("/static/missing.js")).status == 404

    watch = (
        "document.addEventListener('securitypolicyviolation',"
        " (e) => (window.violations ||= []).push(e.violatedDirective))"
    )
    page = await pages.open(page_url(node), "csp", init_script=watch)
    log = pages.log(page)
    await join(page, "carla")
    await say(page, "a page that keeps to its own policy")
    await expect(message_text(page, "a page that keeps to its own policy")).to_have_count(1)
    assert await page.evaluate("window.violations ?? []") == []  # the page breaks no rule
    injected = "const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
    await page.evaluate(f"{injected} document.body.append(s)")
    await page.wait_for_function("(window.violations ?? []).length > 0", timeout=5000)
    assert await page.evaluate("typeof window.ran") == "undefined"  # and the policy holds
    assert len(log.errors) == 1 and "violates the following Content Security" in log.errors[0]
    log.errors.clear()  # the one error this test caused on purpose


async def test_keyboard_only_with_a_taken_and_an_invalid_name(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a page that swallows the server's refusal of a name (error frame,
    then close 1008 before welcome), or that needs a mouse: Enter to join, Enter to
    send, Shift+Enter for a new line, Ctrl+K to go to another room."""
    holder = await join_json(node, "alice")
    page = await pages.open(page_url(node), "keyboard")
    keys = page.keyboard
    name_input = page.get_by_test_id("name-input")
    await expect(name_input).to_be_focused()

    await keys.type("alice")
    await keys.press("Enter")
    await expect(page.get_by_test_id("name-error")).to_contain_text("taken")
    await expect(name_input).to_be_focused()
    await keys.type("x" * 40)  # the text was selected: typing replaces it
    await keys.press("Enter")
    await expect(page.get_by_test_id("name-error")).to_contain_text("1 to 32 characters")

    await keys.type("bea")
    await keys.press("Enter")
    await expect(page.get_by_test_id("status")).to_have_text("Connected")
    await expect(page.get_by_test_id("message-input")).to_be_focused()
    await keys.type("typed, then Enter")
    await keys.press("Enter")
    assert (await holder.expect("message", text="typed, then Enter"))["from"] == "bea"
    await keys.type("line one")
    await keys.press("Shift+Enter")
    await keys.type("line two")
    await keys.press("Enter")
    await holder.expect("message", text="line one\nline two")

    await keys.press("Control+k")
    await expect(page.get_by_test_id("room-input")).to_be_focused()
    await keys.type("kbd")
    await keys.press("Enter")
    await expect(page.get_by_role("heading", name="# kbd")).to_be_visible()
    await expect(page.get_by_test_id("message-input")).to_be_focused()
    await keys.type("in kbd now")
    await keys.press("Enter")
    await expect(message_text(page, "in kbd now")).to_have_count(1)
    await expect(page.locator("#pending .message")).to_have_count(0)
    assert (await holder.request("history", room="kbd"))["messages"][0]["text"] == "in kbd now"


# auth: a node run with --jwt-secret ------------------------------------------------------

JWT_SECRET = "a-secret-for-the-page-tests-of-at-least-32-bytes"


@pytest.fixture
async def auth_node(aiohttp_client: Any) -> TestClient:
    """One gateway node that wants a token signed with JWT_SECRET on every /ws."""
    settings = replace(TEST_SETTINGS, jwt_secret=JWT_SECRET, jwt_leeway=0)
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


@pytest.mark.parametrize(
    ("fragment", "room", "left"),
    [("#token={}", "lobby", "/"), ("#room=dev&token={}", "dev", "/#dev")],
    ids=["token", "room-and-token"],
)
async def test_a_token_in_the_address_logs_in_as_its_name_and_leaves_the_address(
    auth_node: TestClient, pages: Pages, fragment: str, room: str, left: str
) -> None:
    """Guards against a page that cannot join a node with auth from a link, that shows
    or sends a name other than the token's (the remembered one: the server would
    refuse it), or that leaves the token in the address bar, the history or storage,
    where a copied address or a screenshot passes it on."""
    token = mint(JWT_SECRET, "Zoë", 600)
    watcher = await join_json(auth_node, "watch", room, token=mint(JWT_SECRET, "watch", 600))
    remembered = "origin !== 'null' && localStorage.setItem('chat-gateway.name', 'someone else')"
    page = await pages.open(
        page_url(auth_node) + fragment.format(token), "zoe", init_script=remembered
    )
    await expect(page.get_by_test_id("status")).to_have_text("Connected")
    await expect(page.locator("#me-name")).to_have_text("Zoë")
    await expect(page.get_by_role("heading", name=f"# {room}")).to_be_visible()
    await say(page, "signed in by a link")
    assert (await watcher.expect("message", text="signed in by a link"))["from"] == "Zoë"

    assert await page.evaluate("location.href") == page_url(auth_node).rstrip("/") + left
    stored = await page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert token not in stored
    assert token not in await page.content()
    await pages.screenshot(page)
    await page.go_back()  # Back does not bring it back either: the entry was replaced
    assert token not in page.url


async def test_the_form_asks_for_a_token_with_the_servers_reason_and_a_pasted_one_joins(
    auth_node: TestClient, pages: Pages
) -> None:
    """Guards against a page whose users cannot log in to a node with auth: the token
    field must appear when the server refuses for want of one (saying why), take a
    pasted token from the keyboard alone, and join as the token's name."""
    page = await pages.open(page_url(auth_node), "ann")
    keys = page.keyboard
    token_input = page.get_by_test_id("token-input")
    await expect(token_input).to_be_hidden()
    await keys.type("ann")
    await keys.press("Enter")
    await expect(page.get_by_test_id("name-error")).to_contain_text("needs a token")
    await expect(token_input).to_be_visible()
    await expect(token_input).to_be_focused()
    await expect(token_input).to_have_attribute("aria-invalid", "true")

    await keys.insert_text(mint(JWT_SECRET, "Ann", 600))  # as a paste does
    await keys.press("Enter")
    await expect(page.get_by_test_id("status")).to_have_text("Connected")
    await expect(page.locator("#me-name")).to_have_text("Ann")
    await expect(page.get_by_test_id("message-input")).to_be_focused()


async def test_a_bad_token_shows_the_servers_reason_and_is_not_tried_again(
    auth_node: TestClient, pages: Pages
) -> None:
    """Guards against a page that loops reconnecting with a token the server refused,
    or that swallows the reason."""
    forged = jwt.encode({"sub": "mallory"}, "not-the-secret-but-at-least-32-bytes!!")
    page = await pages.open("about:blank", "forged")  # to listen before the page loads
    opened = websocket_urls(page)
    await page.goto(f"{page_url(auth_node)}#token={forged}")
    error = page.get_by_test_id("name-error")
    await expect(error).to_contain_text("The token was refused: the token is not valid")
    await expect(page.get_by_test_id("token-input")).to_be_focused()
    await expect(page.locator("#app")).to_be_hidden()
    await no_more_websockets(page, opened, 1)
    assert forged not in await page.evaluate("location.href")


async def test_an_expired_token_on_reconnect_goes_back_to_the_form_and_a_new_one_resumes(
    auth_node: TestClient, pages: Pages
) -> None:
    """Guards against a page that, its token expired, reconnects forever (or stops with
    nothing to do but reload), and against a renewal that loses what was on the page or
    a message typed while it was away."""
    proxy = await TcpProxy(auth_node.port).start()  # type: ignore[arg-type]
    try:
        watcher = await join_json(auth_node, "watch", token=mint(JWT_SECRET, "watch", 600))
        token = mint(JWT_SECRET, "kim", 2)
        page = await pages.open(f"http://127.0.0.1:{proxy.port}/#token={token}", "kim")
        opened = websocket_urls(page)
        await expect(page.get_by_test_id("status")).to_have_text("Connected")
        await say(page, "said before it expired")
        await watcher.expect("message", text="said before it expired")

        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, expires + 0.1 - time.time()))  # a clock, not an event
        proxy.accepting = False
        proxy.cut()
        await expect(page.get_by_test_id("status")).to_have_text("Reconnecting")
        await say(page, "typed while away")
        await expect(page.locator("#pending .message")).to_have_count(1)
        proxy.accepting = True  # the next attempt is refused: the token has expired
        await expect(page.locator("#login")).to_be_visible(timeout=10000)
        error = page.get_by_test_id("name-error")
        await expect(error).to_have_text("The token was refused: the token has expired")
        await expect(page.get_by_test_id("token-input")).to_be_focused()
        await no_more_websockets(page, opened, len(opened))

        await page.keyboard.insert_text(mint(JWT_SECRET, "kim", 600))
        await page.keyboard.press("Enter")
        await expect(page.get_by_test_id("status")).to_have_text("Connected")
        await watcher.expect("message", text="typed while away")
        await expect(page.locator("#pending .message")).to_have_count(0)
        assert await shown_texts(page) == ["said before it expired", "typed while away"]
        assert [f["text"] for f in watcher.frames if f.get("type") == "message"] == [
            "said before it expired",
            "typed while away",
        ]
        await pages.close(page)
    finally:
        await proxy.close()


async def test_the_token_and_the_session_never_travel_in_a_websocket_url(
    aiohttp_client: Any, pages: Pages
) -> None:
    """Guards against a page that puts its bearer secrets in the URL of /ws, where a
    proxy logs them (nginx's error log keeps the request line, query included): the
    token and the session secret go as `chat.token.`/`chat.session.` subprotocols after
    `chat.v1.json`, on the first connection and on every reconnect; `name`, `room` and
    `since` stay in the query."""
    app = create_app(replace(TEST_SETTINGS, jwt_secret=JWT_SECRET, jwt_leeway=0))
    handshakes = record_handshakes(app)
    node = await aiohttp_client(app)
    proxy = await TcpProxy(node.port).start()
    try:
        token = mint(JWT_SECRET, "Tess", 600)
        page = await pages.open("about:blank", "tess")  # to listen before the page loads
        urls = websocket_urls(page)
        welcomes = received_frames(page, "welcome")
        await page.goto(f"http://127.0.0.1:{proxy.port}/#room=dev&token={token}")
        status = page.get_by_test_id("status")
        await expect(status).to_have_text("Connected")
        await say(page, "before the cut")
        await expect(message_text(page, "before the cut")).to_have_count(1)

        async with page.expect_websocket():  # the page reconnects, with its session
            proxy.cut()
        await expect(status).to_have_text("Connected")
        await say(page, "after the cut")
        await expect(message_text(page, "after the cut")).to_have_count(1)
    finally:
        await proxy.close()

    assert len(urls) == 2 and len(welcomes) == 2
    session = str(welcomes[0]["session"])
    for url in urls:
        assert "token=" not in url and "session=" not in url, url
        assert token not in url and session not in url, url
        assert "room=dev" in url, url
    assert "since=" in urls[1]
    assert [h.offered for h in handshakes] == [
        [JSON_PROTOCOL, f"chat.token.{token}"],
        [JSON_PROTOCOL, f"chat.token.{token}", f"chat.session.{session}"],
    ]
    assert [h.answered for h in handshakes] == [JSON_PROTOCOL, JSON_PROTOCOL]
    assert all(h.query.keys() <= {"name", "room", "since"} for h in handshakes)


async def test_a_pasted_token_that_cannot_be_one_is_refused_on_the_form(
    auth_node: TestClient, pages: Pages
) -> None:
    """Guards against a page that tries to connect with a "token" a subprotocol cannot
    carry (the browser throws, and the user would see only "could not connect"): the
    form says what is wrong and nothing is sent."""
    page = await pages.open("about:blank", "typo")
    opened = websocket_urls(page)
    await page.goto(page_url(auth_node))
    await page.keyboard.type("ann")
    await page.keyboard.press("Enter")
    token_input = page.get_by_test_id("token-input")
    await expect(token_input).to_be_focused()
    await page.keyboard.insert_text("two words")
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("name-error")).to_have_text(
        "That is not a token: a token has only letters, digits, . _ and -."
    )
    await expect(token_input).to_be_focused()
    await expect(token_input).to_have_attribute("aria-invalid", "true")
    await no_more_websockets(page, opened, 1)  # only the first try, which asked for a token


@pytest.mark.parametrize("fragment", ["#room=dev", "#dev"])
async def test_the_room_in_the_address_is_entered_first(
    node: TestClient, pages: Pages, fragment: str
) -> None:
    """Guards against a page that ignores the room of its link, in either form the README
    gives (`/#dev`, or `/#room=dev` as in `/#room=dev&token=...`) and starts in lobby."""
    watcher = await join_json(node, "watch", "dev")
    page = await pages.open(page_url(node) + fragment, "linked")
    await join(page, "linked")
    await expect(page.get_by_role("heading", name="# dev")).to_be_visible()
    await expect(page.get_by_test_id("rooms").locator(".nav-button")).to_have_count(1)
    await say(page, "came in by the link")
    got = await watcher.expect("message", text="came in by the link")
    assert (got["room"], got["from"]) == ("dev", "linked")


async def test_a_paste_over_the_limit_is_kept_whole_and_flagged_until_it_fits(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a message box that silently cuts a long paste at the limit (the
    textarea's maxlength did, at 4000 UTF-16 units), sends what the server will refuse,
    or counts differently from the server (an emoji is one character there)."""
    watcher = await join_json(node, "watcher")
    page = await pages.open(page_url(node), "paster")
    await join(page, "paster")
    box = page.get_by_test_id("message-input")
    count = page.get_by_test_id("char-count")
    await expect(count).to_be_hidden()

    pasted = "a" * 4100
    await box.focus()
    await page.keyboard.insert_text(pasted)  # as a paste does
    await expect(box).to_have_value(pasted)  # nothing dropped
    await expect(count).to_have_text("4100 / 4000: 100 characters too many. Shorten it to send.")
    await expect(count).to_be_visible()
    await expect(box).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("send-button")).to_be_disabled()
    await box.press("Enter")
    await expect(box).to_have_value(pasted)  # not sent, not cleared
    await expect(page.locator("#pending .message")).to_have_count(0)

    fits = "a" * 3999 + "\N{GRINNING FACE}"  # 4000 characters, 4001 UTF-16 units
    await box.fill(fits)
    await expect(count).to_have_text("4000 / 4000")
    await expect(box).to_have_attribute("aria-invalid", "false")
    await expect(page.get_by_test_id("send-button")).to_be_enabled()
    await box.press("Enter")
    got = await watcher.expect("message", text=fits)
    assert got["from"] == "paster"
    await expect(box).to_have_value("")
    await expect(count).to_be_hidden()
    await expect(message_text(page, fits)).to_have_count(1)
    await expect(page.locator("#pending .message")).to_have_count(0)  # nothing refused
    assert [f["text"] for f in watcher.frames if f.get("type") == "message"] == [fits]


async def test_a_long_message_is_folded_and_show_more_opens_it_from_the_keyboard(
    node: TestClient, pages: Pages
) -> None:
    """Guards against one long message taking the whole view (many lines, or one long
    paragraph): it shows a few lines and a "Show more" button that the keyboard reaches
    and opens, that stays open when the log is redrawn, while a short message has none;
    folding never drops text."""
    poster = await join_json(node, "poster")
    page = await pages.open(page_url(node), "reader")
    await join(page, "reader")
    lines = "\n".join(f"line {n} of a long paste" for n in range(1, 81))
    paragraph = " ".join(["a paragraph that goes on and on"] * 120)
    for text in (lines, paragraph, "short and whole"):
        await poster.request("send", room="lobby", text=text)
    await expect(message_text(page, "short and whole")).to_have_count(1)

    log = page.get_by_test_id("messages")
    folded = log.locator(".message").filter(has_text="line 80 of a long paste")
    long_text = folded.locator(".text")
    assert await long_text.evaluate("t => t.textContent") == lines  # all of it is there
    for message in (folded, log.locator(".message").filter(has_text="a paragraph that")):
        button = message.get_by_role("button", name="Show more")
        await expect(button).to_be_visible()
        await expect(button).to_have_attribute("aria-expanded", "false")
        box = await message.bounding_box()
        assert box is not None and box["height"] < 260, box  # the view is 720 high
    short = log.locator(".message").filter(has_text="short and whole")
    await expect(short.get_by_role("button")).to_have_count(0)

    await log.focus()  # the log, then Tab: the first "Show more"
    await page.keyboard.press("Tab")
    show_more = folded.get_by_role("button", name="Show more")
    await expect(show_more).to_be_focused()
    await page.keyboard.press("Enter")
    show_less = folded.get_by_role("button", name="Show less")
    await expect(show_less).to_be_focused()
    await expect(show_less).to_have_attribute("aria-expanded", "true")
    height, full = await long_text.evaluate("t => [t.clientHeight, t.scrollHeight]")
    assert height >= full > 1000  # every line shows

    await page.get_by_test_id("room-input").fill("elsewhere")  # away and back: redrawn
    await page.get_by_test_id("room-input").press("Enter")
    await expect(page.get_by_role("heading", name="# elsewhere")).to_be_visible()
    await page.get_by_test_id("rooms").locator('[data-room="lobby"]').click()
    await expect(folded.get_by_role("button", name="Show less")).to_be_visible()
    await log.focus()
    await page.keyboard.press("Tab")  # the same button, then Space folds it again
    await expect(folded.get_by_role("button", name="Show less")).to_be_focused()
    await page.keyboard.press("Space")
    await expect(folded.get_by_role("button", name="Show more")).to_be_visible()
    box = await folded.bounding_box()
    assert box is not None and box["height"] < 260, box


async def test_a_send_the_server_refuses_shows_its_reason_and_is_not_left_pending(
    aiohttp_client: Any, pages: Pages
) -> None:
    """Guards against a page that leaves a refused message "Sending…" forever or hides
    the server's reason (an `error` answering the send: here `too_long` from a node
    whose limit is lower than the page's; bidi override characters, say, are refused
    the same way): the message shows as not sent, with the reason, Retry and Discard,
    and the connection goes on."""
    settings = replace(TEST_SETTINGS, max_message_chars=40)
    node: TestClient = await aiohttp_client(create_app(settings))
    watcher = await join_json(node, "watcher")
    page = await pages.open("about:blank", "refused")
    async with page.expect_websocket() as opened:
        await page.goto(page_url(node))
        await join(page, "refused")
    socket = await opened.value
    await say(page, "x" * 41)
    failed = page.locator("#pending .message.failed")
    await expect(failed).to_have_count(1)
    await expect(failed.locator(".send-error")).to_have_text(
        "Not sent: a message is at most 40 characters"
    )
    await expect(failed.locator("time")).not_to_have_text("Sending…")
    await expect(message_text(page, "x" * 41)).to_have_count(1)  # the text is still there

    async with socket.expect_event("framereceived", lambda data: '"too_long"' in data):
        await failed.get_by_role("button", name="Retry").click()  # tried again: refused again
    await expect(failed).to_have_count(1)
    await expect(failed.locator(".send-error")).to_have_text(
        "Not sent: a message is at most 40 characters"
    )
    await failed.get_by_role("button", name="Discard").click()
    await expect(page.locator("#pending .message")).to_have_count(0)
    await say(page, "short enough")
    await watcher.expect("message", text="short enough")
    await expect(page.get_by_test_id("status")).to_have_text("Connected")
    assert [f["text"] for f in watcher.frames if f.get("type") == "message"] == ["short enough"]
