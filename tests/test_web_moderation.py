"""Room moderation in the web page (issue #14, docs/protocol.md, "Moderators"), in a real browser
against a real gateway with auth on: a moderator deletes messages and removes people,
the others see it, the removed see why, and an operator's disconnect is final.

Each test opens pages as different people (a browser context each, logged in with a
token in the address), saves a screenshot of every page into test-artifacts/, and fails
if a page logged an error or opened a dialog. Every wait is bounded.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Locator, Page, expect

from gateway.app import create_app
from gateway.auth import mint
from tests.conftest import TEST_SETTINGS, JsonPeer, join_json
from tests.web_support import (
    Pages,
    message_text,
    no_more_websockets,
    received_frames,
    say,
    shown_texts,
    websocket_urls,
)
from tooling.tcp_proxy import TcpProxy

SECRET = "a-secret-for-the-moderation-page-tests-32-bytes"
API_KEY = "the-moderation-api-key"


@pytest.fixture
async def node(aiohttp_client: Any) -> TestClient:
    """One gateway node with auth on (tokens signed with SECRET) and an operator key."""
    settings = replace(TEST_SETTINGS, jwt_secret=SECRET, jwt_leeway=0, api_key=API_KEY)
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


def token(name: str, moderates: list[str] | None = None) -> str:
    return mint(SECRET, name, 600, moderates=moderates)


async def log_in(
    page: Page, base: str, name: str, room: str = "lobby", moderates: list[str] | None = None
) -> None:
    """Log `page` (on the name form, at `base`) in as `name` (a moderator of `moderates`)
    with a token in the address, in `room`."""
    await page.goto(f"{base}#room={room}&token={token(name, moderates)}")
    await expect(page.get_by_test_id("status")).to_have_text("Connected")
    await expect(page.get_by_role("heading", name=f"# {room}")).to_be_visible()


async def open_as(
    pages: Pages, base: str, name: str, room: str = "lobby", moderates: list[str] | None = None
) -> Page:
    """A page of its own logged in as `name` (a moderator of `moderates`), in `room`."""
    page = await pages.open(base, name)
    await log_in(page, base, name, room, moderates)
    return page


async def peer(node: TestClient, name: str, room: str = "lobby", **claims: Any) -> JsonPeer:
    """A JSON-mode client of `name` in `room`, with a token."""
    return await join_json(node, name, room, token=mint(SECRET, name, 600, **claims))


def entries(page: Page) -> Locator:
    """What each message in the log shows: its text, or that it was deleted."""
    return page.locator("#log .message").locator(".text, .tombstone")


def member(page: Page, name: str) -> Locator:
    return (
        page.get_by_test_id("members")
        .locator(".nav-item")
        .filter(has=page.locator(f'[data-name="{name}"]'))
    )


async def until_shown(page: Page, until: int) -> str:
    """A ban's end as the page says it (its own locale and time zone)."""
    shown: str = await page.evaluate(
        "(ms) => new Intl.DateTimeFormat(undefined, {timeStyle: 'short'}).format(new Date(ms))",
        until,
    )
    return shown


async def test_a_deleted_message_shows_as_deleted_in_place_live_and_after_a_reload(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a moderator with no way to delete (or one deleting at a click,
    with no second step), a delete button for someone who may not use it, a deletion
    that the room does not see live or that leaves the text on a page, and a history
    (after a reload) that shows the deleted text again or loses its place."""
    base = str(node.make_url("/"))
    lobby = await peer(node, "watch")
    await lobby.request("send", room="lobby", text="said in the lobby")
    mod = await open_as(pages, base, "mod", "team-a", moderates=["team-*"])
    bob = await open_as(pages, base, "bob", "team-a")
    for text in ("before", "a message to delete", "after"):
        await say(bob, text)
    await expect(message_text(mod, "after")).to_have_count(1)
    await expect(mod.locator("#conversation-info")).to_contain_text("you moderate it")
    delete = re.compile("^Delete message from ")
    await expect(bob.get_by_role("button", name=delete)).to_have_count(0)  # not a moderator
    await expect(mod.get_by_role("button", name=delete)).to_have_count(3)

    exact = re.compile("^a message to delete$")
    target = mod.locator("#log .message").filter(has=mod.locator(".text", has_text=exact))
    await target.hover()
    await target.get_by_role("button", name="Delete message from bob").click()
    confirm = target.get_by_role("button", name="Delete", exact=True)
    await expect(confirm).to_be_focused()  # a second step, from the keyboard too
    await mod.keyboard.press("Escape")  # backed out: nothing is deleted
    await expect(target.get_by_role("button", name="Delete message from bob")).to_be_focused()
    await expect(message_text(bob, "a message to delete")).to_have_count(1)
    await mod.keyboard.press("Enter")
    await expect(confirm).to_be_focused()
    await mod.keyboard.press("Enter")

    shown = ["before", "Message deleted by mod", "after"]
    for page in (mod, bob):
        await expect(entries(page)).to_have_text(shown)
        await expect(page.locator("#log .message.deleted")).to_have_attribute("data-from", "bob")
        assert "a message to delete" not in await page.content()
    await expect(mod.get_by_role("button", name=delete)).to_have_count(2)  # none on a deleted one

    await bob.reload()  # the page again: the room's history, from the server
    await log_in(bob, base, "bob", "team-a")
    await expect(entries(bob)).to_have_text(shown)
    assert await shown_texts(bob) == ["before", "after"]
    assert "a message to delete" not in await bob.content()

    await mod.get_by_test_id("room-input").fill("lobby")  # a room mod does not moderate
    await mod.get_by_test_id("room-input").press("Enter")
    await expect(message_text(mod, "said in the lobby")).to_have_count(1)
    await expect(mod.get_by_role("button", name=delete)).to_have_count(0)
    await expect(mod.locator("#conversation-info")).not_to_contain_text("moderate")


async def test_a_message_deleted_while_a_page_was_away_is_replayed_as_deleted(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a resume (`since`) whose replay shows a deleted message's text, or
    does not show it as deleted in its place."""
    proxy = await TcpProxy(node.port).start()  # type: ignore[arg-type]
    try:
        watch = await peer(node, "watch", moderates=["lobby"])
        page = await open_as(pages, f"http://127.0.0.1:{proxy.port}/", "kim")
        await watch.request("send", room="lobby", text="seen before the drop")
        await expect(message_text(page, "seen before the drop")).to_have_count(1)

        proxy.accepting = False
        proxy.cut()
        await expect(page.get_by_test_id("status")).to_have_text("Reconnecting")
        gone = await watch.request("send", room="lobby", text="deleted while kim was away")
        await watch.request("send", room="lobby", text="kept while kim was away")
        assert (await watch.request("delete", room="lobby", offset=gone["offset"]))["type"] == "ack"
        proxy.accepting = True

        await expect(page.get_by_test_id("status")).to_have_text("Connected", timeout=15000)
        shown = ["seen before the drop", "Message deleted by watch", "kept while kim was away"]
        await expect(entries(page)).to_have_text(shown)
        assert "deleted while kim was away" not in await page.content()
    finally:
        await proxy.close()


async def test_a_moderator_removes_people_who_see_why_and_a_ban_with_its_end(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a moderator with no way to remove someone (from the member list,
    with a ban; or with /kick), a refusal that is not shown, a removed page that does
    not say so (who, until when) or still acts as in the room, and a ban whose refusal
    of a join again does not say when it ends."""
    base = str(node.make_url("/"))
    mod = await open_as(pages, base, "mod", moderates=["lobby"])
    bob = await pages.open(base, "bob")
    removals = received_frames(bob, "removed")
    await log_in(bob, base, "bob")
    carol = await open_as(pages, base, "carol")
    await expect(member(mod, "carol")).to_have_count(1)

    # Not a moderator: the server says no, and the page says what it said.
    await say(carol, "/kick bob")
    await expect(carol.locator("#banner")).to_contain_text("not let you moderate lobby")
    await expect(carol.get_by_role("button", name=re.compile("^Remove "))).to_have_count(0)

    # From the member list, banned for 5 minutes.
    await member(mod, "bob").hover()
    await member(mod, "bob").get_by_role("button", name="Remove bob from #lobby").click()
    ban = mod.get_by_role("combobox", name="Ban bob from #lobby")
    await expect(ban).to_be_focused()
    await ban.select_option(label="Ban for 5 minutes")
    await member(mod, "bob").get_by_role("button", name="Remove", exact=True).click()
    await expect(mod.locator("#banner")).to_have_text(
        "You removed bob from #lobby, banned for 5 minutes."
    )
    await expect(member(mod, "bob")).to_have_count(0)
    state = bob.get_by_test_id("room-state")
    await expect(state).to_contain_text("You were removed from #lobby by mod, banned until ")
    assert len(removals) == 1
    until = removals[0]["until"]
    assert isinstance(until, int) and abs(until - (time.time() + 300) * 1000) < 60_000
    await expect(state).to_contain_text(await until_shown(bob, until))
    await expect(bob.locator("#composer")).to_be_hidden()
    await expect(bob.locator('#rooms [data-room="lobby"]')).to_contain_text("removed")
    await expect(bob.get_by_test_id("members").locator(".nav-item")).to_have_count(0)
    await say(mod, "said after bob was removed")
    await expect(message_text(carol, "said after bob was removed")).to_have_count(1)
    await expect(message_text(bob, "said after bob was removed")).to_have_count(0)

    # Back in? Not while banned: the page says until when.
    await bob.get_by_role("button", name="Join again").click()
    await expect(state).to_contain_text("You are banned from #lobby until ")
    await expect(state).to_contain_text(await until_shown(bob, until))
    await expect(bob.locator('#rooms [data-room="lobby"]')).to_contain_text("banned")

    # With /kick and no ban: carol is out, and may come back at once.
    await say(mod, "/kick carol")
    await expect(carol.get_by_test_id("room-state")).to_have_text(
        re.compile(r"^\s*You were removed from #lobby by mod\.\s*Join again\s*$")
    )
    await expect(message_text(mod, "/kick carol")).to_have_count(0)  # a command, not said
    await carol.get_by_role("button", name="Join again").click()
    await expect(carol.get_by_test_id("room-state")).to_be_hidden()
    await expect(member(mod, "carol")).to_have_count(1)
    await say(carol, "carol is back")
    await expect(message_text(mod, "carol is back")).to_have_count(1)


async def test_a_page_opened_on_a_room_it_is_banned_from_says_until_when_and_waits(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a page that, banned from its first room (error after welcome, then
    close 1008), says nothing of the ban or tries again and again."""
    response = await node.put(
        "/api/rooms/lobby/bans/dan",
        json={"seconds": 600},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 204
    base = str(node.make_url("/"))
    page = await pages.open(base, "dan")
    opened = websocket_urls(page)
    errors = received_frames(page, "error")
    await page.goto(f"{base}#token={token('dan')}")
    await expect(page.get_by_test_id("status")).to_have_text("Offline")
    await expect(page.locator("#banner")).to_contain_text("You are banned from #lobby until ")
    assert len(errors) == 1 and errors[0]["code"] == "banned"
    until = errors[0]["until"]
    assert isinstance(until, int)
    await expect(page.locator("#banner")).to_contain_text(await until_shown(page, until))
    await expect(page.get_by_test_id("room-state")).to_contain_text("banned from #lobby")
    await no_more_websockets(page, opened, 1)


async def test_an_operators_disconnect_is_shown_and_the_page_does_not_reconnect(
    node: TestClient, pages: Pages
) -> None:
    """Guards against a page that reconnects by itself after an operator closed it
    (4001), or that does not say why it is offline; reconnecting stays the user's call."""
    page = await open_as(pages, str(node.make_url("/")), "erin")
    opened = websocket_urls(page)
    response = await node.post(
        "/api/users/erin/disconnect", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status == 202
    await expect(page.get_by_test_id("status")).to_have_text("Offline")
    await expect(page.locator("#banner")).to_contain_text("An operator disconnected you")
    await no_more_websockets(page, opened, 0)

    await page.locator("#banner").get_by_role("button", name="Reconnect").click()
    await expect(page.get_by_test_id("status")).to_have_text("Connected")
    assert len(opened) == 1
