"""The admin console (/admin) in a real Chromium, against three real gateway processes
on a real redis-server: the key is asked for and a wrong one refused, the node list
follows the cluster, and a disconnect or a ban from the console holds on every node.

Each page fails its test if it logged an error (a CSP violation included) or opened a
browser dialog; every wait is bounded. Screenshots at 1280 and 390 px wide go to
test-artifacts/, or to docs/images/ with CHAT_DOC_IMAGES=1 (how the ones in
docs/operations.md were made).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, Request, expect

from gateway.auth import mint
from tests.conftest import WAIT, JsonPeer
from tests.plugins.gateway_nodes import connect
from tests.plugins.redis import REDIS_SERVER, RedisBackend
from tests.web_support import ARTIFACTS, Pages
from tooling.gateway import GatewayProcess
from tooling.processes import ROOT

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs a real redis-server")

SECRET = "a-secret-for-the-admin-console-tests-32-bytes"
API_KEY = "the-admin-console-key"
SLOW_MS = 15_000  # a stopped node leaves the list once its drain and hand-over are done
# What Chromium logs for each answer 401 (the wrong key, refused as it should be).
REFUSED = re.compile(r"^console: Failed to load resource: .* 401 \(Unauthorized\)$")


@pytest.fixture
def cluster(redis_backend: RedisBackend) -> Iterator[list[GatewayProcess]]:
    """Three nodes, as `make cluster` runs them, on the suite's redis-server."""
    assert redis_backend.server is not None
    prefix = redis_backend.new_prefix()
    started: list[GatewayProcess] = []
    env = {"CHAT_JWT_SECRET": SECRET, "CHAT_API_KEY": API_KEY}
    try:
        for i in range(3):
            node = GatewayProcess(
                None,
                "--redis-url", redis_backend.server.url, "--redis-prefix", prefix,
                "--node-id", f"node-{i + 1}", "--presence-timeout", "3",
                "--drain-seconds", "0.2", env=env,
            )  # fmt: skip
            started.append(node.start())
        yield started
    finally:
        for node in started:
            node.close()


def admin_url(node: GatewayProcess) -> str:
    return f"http://127.0.0.1:{node.port}/admin"


async def chat(http: aiohttp.ClientSession, node: GatewayProcess, name: str, room: str) -> JsonPeer:
    """A JSON connection of `name` (a token of its own) on `node`, in `room`."""
    return await connect(http, node, None, token=mint(SECRET, name, 600), room=room)


async def open_console(pages: Pages, node: GatewayProcess, label: str = "admin") -> Page:
    """The console on `node`, opened with the key; waits for the first refresh."""
    page = await pages.open(admin_url(node), label)
    await page.get_by_test_id("key-input").fill(API_KEY)
    await page.get_by_role("button", name="Open the console").click()
    await expect(page.get_by_test_id("updated")).to_contain_text("Updated")
    return page


def node_card(page: Page, node_id: str) -> Any:
    return page.locator(f'.node-card[data-node="{node_id}"]')


async def confirm(page: Page, action: str) -> None:
    """Say yes in the console's own confirmation dialog."""
    dialog = page.get_by_test_id("confirm")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name=action).click()
    await expect(dialog).to_be_hidden()


async def test_the_key_is_asked_for_and_a_wrong_one_refused(
    cluster: list[GatewayProcess], pages: Pages
) -> None:
    """Guards against a console that opens without the key, takes a wrong one, or
    carries the key anywhere but the Authorization header of this tab."""
    page = await pages.open(admin_url(cluster[0]), "key")
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request))
    await expect(page.get_by_test_id("key-input")).to_be_visible()
    await expect(page.get_by_test_id("nodes")).to_be_hidden()
    await page.get_by_test_id("key-input").fill("not-the-key")
    await page.get_by_role("button", name="Open the console").click()
    await expect(page.get_by_test_id("key-error")).to_have_text(
        "That key was refused: type the key the nodes were started with (--api-key)."
    )
    await expect(page.get_by_test_id("nodes")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    await page.get_by_test_id("key-input").fill(API_KEY)
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("updated")).to_contain_text("Updated")
    await page.reload()  # the key stays with the tab: no second asking
    await expect(page.get_by_test_id("nodes")).to_be_visible()
    await expect(page.get_by_test_id("key-input")).to_be_hidden()
    api = [r for r in sent if "/api/" in r.url]
    assert api and all(API_KEY not in r.url and "not-the-key" not in r.url for r in api)
    keys = {(await r.all_headers()).get("authorization") for r in api}
    assert keys == {"Bearer not-the-key", f"Bearer {API_KEY}"}
    assert API_KEY not in page.url
    await page.get_by_role("button", name="Lock").click()  # forgets the key
    await expect(page.get_by_test_id("key-input")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    log = pages.log(page)
    log.errors = [e for e in log.errors if not REFUSED.match(e)]  # the wrong key's 401s


async def test_the_node_list_shows_every_node_and_drops_a_stopped_one(
    cluster: list[GatewayProcess], pages: Pages, http: aiohttp.ClientSession
) -> None:
    """Guards against a node list that shows only the node asked, misses a connection,
    or keeps a node that stopped."""
    page = await open_console(pages, cluster[0])
    cards = page.locator(".node-card")
    await expect(cards).to_have_count(3)
    for i in range(3):
        card = node_card(page, f"node-{i + 1}")
        await expect(card.get_by_test_id("node-state")).to_have_text("ready", timeout=SLOW_MS)
        await expect(card).to_contain_text(f"127.0.0.1:{cluster[i].port}")
    peer = await chat(http, cluster[2], "carol", "lobby")
    connections = node_card(page, "node-3").get_by_test_id("node-connections")
    await expect(connections).to_have_text("1", timeout=SLOW_MS)
    await peer.ws.close()
    cluster[1].stop()  # SIGTERM: it drains and hands over
    await expect(node_card(page, "node-2")).to_have_count(0, timeout=SLOW_MS)
    await expect(cards).to_have_count(2)
    await expect(page.get_by_test_id("nodes-summary")).to_contain_text("2 nodes, 2 ready")


async def test_a_disconnect_from_the_console_closes_every_connection(
    cluster: list[GatewayProcess], pages: Pages, http: aiohttp.ClientSession
) -> None:
    """Guards against a console disconnect that reaches one node only, or needs no
    confirmation; and a user search that misses a node or a room."""
    vic = [await chat(http, cluster[0], "vic", "lobby"), await chat(http, cluster[1], "vic", "dev")]
    bystander = await chat(http, cluster[1], "wat", "lobby")
    page = await open_console(pages, cluster[2])
    await page.get_by_test_id("user-input").fill("vic")
    await page.get_by_role("button", name="Find").click()
    result = page.get_by_test_id("user-result")
    await expect(result).to_contain_text("online on 2 nodes")
    await expect(result).to_contain_text("on node-1")
    await expect(result).to_contain_text("on node-2")
    await expect(page.get_by_test_id("user-rooms")).to_contain_text("# dev")
    await expect(page.get_by_test_id("user-rooms")).to_contain_text("# lobby")
    await page.get_by_test_id("user-disconnect").click()
    await page.get_by_role("button", name="Cancel").click()  # nothing happens
    assert (await vic[0].request("ping"))["type"] == "pong"
    await page.get_by_test_id("user-disconnect").click()
    await confirm(page, "Disconnect")
    for peer in vic:
        assert await peer.close_code(WAIT) == 4001
    assert (await bystander.request("ping"))["type"] == "pong"
    await expect(page.get_by_test_id("action-result")).to_have_text(
        "Disconnected vic on every node."
    )
    await expect(result).to_contain_text("offline", timeout=SLOW_MS)
    await expect(page.get_by_test_id("audit")).to_contain_text("operator disconnected vic")


async def test_a_ban_from_the_console_refuses_the_next_join(
    cluster: list[GatewayProcess], pages: Pages, http: aiohttp.ClientSession
) -> None:
    """Guards against a console ban that does not remove the user or let it back in;
    and an operator's message that does not reach the room."""
    vic = await chat(http, cluster[0], "vic", "lobby")
    watcher = await chat(http, cluster[1], "wat", "lobby")
    page = await open_console(pages, cluster[2])
    form = page.locator("#ban-form")
    await form.get_by_test_id("ban-room").fill("lobby")
    await form.get_by_test_id("ban-name").fill("vic")
    await form.get_by_test_id("ban-seconds").select_option(label="1 day")
    await form.get_by_test_id("ban-button").click()
    await expect(page.get_by_test_id("confirm")).to_contain_text("Ban vic from lobby for 1 day?")
    await confirm(page, "Ban")
    removed = await vic.expect("removed", room="lobby")
    assert removed["by"] == "operator"
    await watcher.expect("presence", event="leave", name="vic")
    refused = await vic.request("join", room="lobby")
    assert refused["code"] == "banned", refused
    await expect(page.get_by_test_id("audit")).to_contain_text(
        "operator banned vic from lobby for 24 h"
    )
    await page.get_by_test_id("publish-room").fill("lobby")
    await page.get_by_test_id("publish-text").fill("Please keep it civil.")
    await page.get_by_test_id("publish-button").click()
    await confirm(page, "Publish")
    said = await watcher.expect("message", room="lobby")
    assert (said["from"], said["text"]) == ("operator", "Please keep it civil.")
    await form.get_by_test_id("unban-button").click()
    await confirm(page, "Unban")
    await expect(page.get_by_test_id("action-result")).to_have_text("vic may join lobby again.")
    assert (await vic.request("join", room="lobby"))["type"] == "subscribed"


@pytest.mark.parametrize("width", [1280, 390])
async def test_screenshots_of_the_console(
    cluster: list[GatewayProcess], pages: Pages, http: aiohttp.ClientSession, width: int
) -> None:
    """The console of a busy cluster, as docs/operations.md shows it (look at them)."""
    people = []
    for on, name, room in [
        (0, "alice", "lobby"), (1, "bob", "lobby"), (2, "carol", "dev"), (0, "dave", "lobby"),
        (1, "erin", "support"), (2, "frank", "dev"), (1, "alice", "dev"),
    ]:  # fmt: skip
        people.append(await chat(http, cluster[on], name, room))
    page = await open_console(pages, cluster[0], f"console-{width}")
    await page.set_viewport_size({"width": width, "height": 900})
    await expect(page.locator("#rooms tr")).to_have_count(3)  # the first count: from now
    for i, text in enumerate(["hi all", "standup in 5", "ok", "on my way", "lunch?"]):
        await people[i % 4].request("send", room="lobby" if i % 4 != 2 else "dev", text=text)
    await page.get_by_test_id("ban-room").fill("lobby")
    await page.get_by_test_id("ban-name").fill("dave")
    await page.get_by_test_id("ban-button").click()
    await confirm(page, "Ban")
    await page.get_by_test_id("user-input").fill("alice")
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_test_id("user-result")).to_contain_text("online on 2 nodes")
    await expect(page.get_by_test_id("audit")).to_contain_text("banned dave")
    for i in range(3):  # each node's heartbeat has carried its connections by now
        card = node_card(page, f"node-{i + 1}")
        await expect(card.get_by_test_id("node-connections")).not_to_have_text("0", timeout=SLOW_MS)
    await expect(page.locator(".node-card").first).not_to_contain_text("—", timeout=SLOW_MS)
    lobby = page.locator('#rooms tr[data-room="lobby"]').get_by_test_id("room-messages")
    await expect(lobby).to_contain_text(re.compile(r"^4 in \d+ s$"), timeout=SLOW_MS)
    await page.evaluate("window.scrollTo(0, 0)")
    folder = ROOT / "docs" / "images" if os.environ.get("CHAT_DOC_IMAGES") else ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    path: Path = folder / f"admin-console-{width}.png"
    shot = await page.screenshot(path=str(path), full_page=True)
    assert len(shot) > 10_000
