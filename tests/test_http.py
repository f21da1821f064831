"""The HTTP side (docs/protocol.md, "HTTP endpoints"): page, health, readiness, metrics
and the REST API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import WAIT, join_json, join_text, metric, read_metric

StartGateway = Callable[..., Awaitable[TestClient]]

API_KEY = "k3y-for-tests"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def get_json(client: TestClient, path: str, status: int = 200) -> Any:
    """GET `path`, check the status and that the answer is JSON; the decoded body."""
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


# Page, health, readiness, metrics ----------------------------------------------------


async def test_the_page_is_html(client: TestClient) -> None:
    """Guards against / being missing from the package (static files not shipped)."""
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    body = await response.text()
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert "</html>" in body.lower()


async def test_no_path_reaches_a_file_outside_the_page(client: TestClient) -> None:
    """Guards against path traversal: /static/ serves the page's own files by name and
    nothing else, however the path is spelled (raw requests: a client would normalise)."""
    paths = [
        "/static/../config.py",
        "/static/..%2fconfig.py",
        "/static/%2e%2e/config.py",
        "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/....//config.py",
        "/static/chat.js%00.py",
        "/static/..\\config.py",
        "//etc/passwd",
        "/static//etc/passwd",
    ]
    for path in paths:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 404), (path, status)
        assert b"import" not in answer and b"root:" not in answer, path


async def test_healthz_and_readyz_answer_200(client: TestClient) -> None:
    """Guards against a load balancer taking a serving node out of rotation."""
    for path in ("/healthz", "/readyz"):
        response = await client.get(path)
        assert response.status == 200, path
        assert (await response.text()).strip()


async def test_readyz_is_503_once_the_broker_stopped(client: TestClient) -> None:
    """Guards against a node that reports ready while its broker cannot deliver."""
    await client.app.shutdown()
    await client.app.cleanup()  # stops the node and its broker; the HTTP server still answers
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await client.get("/healthz")).status == 200


async def test_metrics_are_prometheus_text_with_connections_by_mode(client: TestClient) -> None:
    """Guards against a /metrics that scrapers cannot parse, or counters that do not count."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    await join_text(client, "ann")
    await alice.request("send", room="lobby", text="hello")
    await alice.ws.send_str("not json")
    await alice.expect("error")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert "# TYPE chat_connections gauge" in text
    assert metric(text, 'chat_connections{mode="json"}') == 2
    assert metric(text, 'chat_connections{mode="text"}') == 1
    assert metric(text, "chat_messages_published_total") == 1
    assert metric(text, 'chat_errors_total{code="bad_frame"}') == 1
    assert metric(text, "chat_slow_consumers_closed_total") == 0
    await alice.ws.close()
    await bob.expect("presence", event="leave", name="alice")  # after the handler ended
    text = await (await client.get("/metrics")).text()
    assert metric(text, 'chat_connections{mode="json"}') == 1


# Rooms, members, messages -----------------------------------------------------------


async def test_rooms_lists_member_counts(client: TestClient) -> None:
    """Guards against counting connections instead of names, or listing empty rooms."""
    assert await get_json(client, "/api/rooms") == {"rooms": [], "total": 0}
    alice = await join_json(client, "alice")
    await join_text(client, "bob")
    await join_json(client, "carol", room="dev")
    await alice.request("join", room="dev")
    assert await get_json(client, "/api/rooms") == {
        "rooms": [{"room": "dev", "members": 2}, {"room": "lobby", "members": 2}],
        "total": 2,
    }


async def test_rooms_drop_a_member_after_they_left(client: TestClient) -> None:
    """Guards against a count that never goes down."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    assert (await get_json(client, "/api/rooms"))["rooms"] == [{"room": "lobby", "members": 2}]
    await alice.ws.close()
    await bob.expect("presence", event="leave", name="alice")
    assert (await get_json(client, "/api/rooms"))["rooms"] == [{"room": "lobby", "members": 1}]


async def test_members_of_a_room(client: TestClient) -> None:
    """Guards against members missing, unsorted, or leaking from another room."""
    await join_json(client, "zed")
    await join_text(client, "Ann")
    await join_json(client, "other", room="dev")
    assert await get_json(client, "/api/rooms/lobby/members") == {
        "room": "lobby",
        "members": ["Ann", "zed"],
    }
    assert await get_json(client, "/api/rooms/empty/members") == {"room": "empty", "members": []}


async def send_many(client: TestClient, count: int) -> list[str]:
    """`count` messages m0.. to lobby from alice; their offsets."""
    alice = await join_json(client, "alice")
    offsets = []
    for i in range(count):
        ack = await alice.request("send", room="lobby", text=f"m{i}")
        offsets.append(ack["offset"])
    return offsets


async def test_messages_are_oldest_first_and_page_with_before(client: TestClient) -> None:
    """Guards against newest-first pages, an off-by-one at `before`, or pages that overlap."""
    offsets = await send_many(client, 7)
    page = await get_json(client, "/api/rooms/lobby/messages")
    assert page["room"] == "lobby"
    assert [m["text"] for m in page["messages"]] == [f"m{i}" for i in range(7)]
    first = page["messages"][0]
    assert (first["type"], first["room"], first["from"], first["offset"]) == (
        "message",
        "lobby",
        "alice",
        offsets[0],
    )
    assert isinstance(first["ts"], int)

    newest = await get_json(client, "/api/rooms/lobby/messages?limit=3")
    assert [m["text"] for m in newest["messages"]] == ["m4", "m5", "m6"]
    older = await get_json(client, f"/api/rooms/lobby/messages?limit=3&before={offsets[4]}")
    assert [m["text"] for m in older["messages"]] == ["m1", "m2", "m3"]
    oldest = await get_json(client, f"/api/rooms/lobby/messages?limit=3&before={offsets[1]}")
    assert [m["text"] for m in oldest["messages"]] == ["m0"]
    none = await get_json(client, f"/api/rooms/lobby/messages?before={offsets[0]}")
    assert none["messages"] == []
    empty = await get_json(client, "/api/rooms/quiet/messages")
    assert empty == {"room": "quiet", "messages": []}


async def test_messages_limit_bounds(gateway: StartGateway) -> None:
    """Guards against the 1 and 100 bounds of `limit` being off by one."""
    client = await gateway(rate_per_second=0)
    await send_many(client, 101)
    assert len((await get_json(client, "/api/rooms/lobby/messages?limit=1"))["messages"]) == 1
    full = await get_json(client, "/api/rooms/lobby/messages?limit=100")
    assert [m["text"] for m in full["messages"]] == [f"m{i}" for i in range(1, 101)]


@pytest.mark.parametrize(
    "limit", ["0", "101", "-1", "abc", "1.5", "", "1e2", "99999999999999999999"]
)
async def test_a_bad_limit_is_a_400_json_error(client: TestClient, limit: str) -> None:
    """Guards against a bad limit becoming a 500, a huge read, or a silent default."""
    body = await get_json(client, f"/api/rooms/lobby/messages?limit={limit}", status=400)
    assert body["error"]["code"] == "bad_request"
    assert body["error"]["message"]


@pytest.mark.parametrize("room", ["bad!", "two%20words", "x" * 65, "%C3%BCn%C3%AF", "a.b"])
@pytest.mark.parametrize("what", ["members", "messages"])
async def test_a_bad_room_is_a_400_json_error(client: TestClient, room: str, what: str) -> None:
    """Guards against invalid room names reaching the broker through the API."""
    body = await get_json(client, f"/api/rooms/{room}/{what}", status=400)
    assert body["error"]["code"] == "invalid_room"


# Publishing -------------------------------------------------------------------------


async def test_publishing_is_off_without_an_api_key(client: TestClient) -> None:
    """Guards against an open publish endpoint on a node started without --api-key."""
    bob = await join_json(client, "bob")
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
        response = await client.post(
            "/api/rooms/lobby/messages", json={"from": "ops", "text": "hi"}, headers=headers
        )
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "unauthorized"
    assert (await get_json(client, "/api/rooms/lobby/messages"))["messages"] == []
    await bob.request("ping")
    assert not [f for f in bob.frames if f["type"] == "message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {API_KEY}x"},
        {"Authorization": f"Bearer {API_KEY[:-1]}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {API_KEY}"},
        {"X-Api-Key": API_KEY},
    ],
    ids=["none", "wrong", "longer", "shorter", "empty", "basic", "other-header"],
)
async def test_a_wrong_or_missing_key_is_401(
    gateway: StartGateway, headers: dict[str, str]
) -> None:
    """Guards against publishing without the key, or with a prefix of it."""
    client = await gateway(api_key=API_KEY)
    response = await client.post(
        "/api/rooms/lobby/messages", json={"from": "ops", "text": "hi"}, headers=headers
    )
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert (await get_json(client, "/api/rooms/lobby/messages"))["messages"] == []


async def test_the_right_key_publishes_to_the_room(gateway: StartGateway) -> None:
    """Guards against a server-side publish that is stored but not delivered (or the
    reverse), or that claims a different offset than members see."""
    client = await gateway(api_key=API_KEY)
    bob = await join_json(client, "bob")
    ann = await join_text(client, "ann")
    outsider = await join_json(client, "outsider", room="dev")
    response = await client.post(
        "/api/rooms/lobby/messages", json={"from": "ops", "text": "hi"}, headers=AUTH
    )
    assert response.status == 201
    body = await response.json()
    assert body["room"] == "lobby" and isinstance(body["offset"], str)
    message = await bob.expect("message")
    assert (message["room"], message["from"], message["text"], message["offset"]) == (
        "lobby",
        "ops",
        "hi",
        body["offset"],
    )
    await ann.expect_line("ops: hi")
    history = await get_json(client, "/api/rooms/lobby/messages")
    assert [(m["from"], m["offset"]) for m in history["messages"]] == [("ops", body["offset"])]
    await outsider.request("ping")
    assert not [f for f in outsider.frames if f["type"] == "message"]


async def test_publishing_to_a_room_nobody_is_in_is_kept_in_history(
    gateway: StartGateway,
) -> None:
    """Guards against a server-side publish that needs a listener to be stored."""
    client = await gateway(api_key=API_KEY)
    response = await client.post(
        "/api/rooms/news/messages", json={"from": "ops", "text": "extra"}, headers=AUTH
    )
    assert response.status == 201
    offset = (await response.json())["offset"]
    late = await join_json(client, "late", room="news")
    assert late.subscribed["offset"] == offset
    history = await late.request("history", room="news")
    assert [m["text"] for m in history["messages"]] == ["extra"]


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("lobby", b"not json", "bad_json"),
        ("lobby", b"", "bad_json"),
        ("lobby", b'["ops", "hi"]', "bad_request"),
        ("lobby", b'{"from": "ops"}', "bad_request"),
        ("lobby", b'{"text": "hi"}', "bad_request"),
        ("lobby", b'{"from": "ops", "text": 5}', "bad_request"),
        ("lobby", b'{"from": null, "text": "hi"}', "bad_request"),
        ("lobby", b'{"from": "ops", "text": "   "}', "bad_request"),
        ("lobby", b'{"from": "ops", "text": "bell\\u0007"}', "bad_request"),
        ("lobby", b'{"from": "", "text": "hi"}', "invalid_name"),
        ("lobby", b'{"from": "' + b"o" * 33 + b'", "text": "hi"}', "invalid_name"),
        ("lobby", b'{"from": "ops", "text": "' + b"x" * 4001 + b'"}', "too_long"),
        ("bad!", b'{"from": "ops", "text": "hi"}', "invalid_room"),
    ],
)
async def test_a_bad_publish_is_a_400_json_error(
    gateway: StartGateway, path: str, body: bytes, code: str
) -> None:
    """Guards against a malformed publish becoming a 500, or reaching the room."""
    client = await gateway(api_key=API_KEY)
    bob = await join_json(client, "bob")
    response = await client.post(
        f"/api/rooms/{path}/messages",
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == code
    assert (await get_json(client, "/api/rooms/lobby/messages"))["messages"] == []
    await bob.request("ping")
    assert not [f for f in bob.frames if f["type"] == "message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/rooms/lobby/messages"), ("PUT", "/api/rooms/lobby/bans/vic")],
)
async def test_a_deeply_nested_body_is_a_400_not_a_500(
    gateway: StartGateway, method: str, path: str
) -> None:
    """Guards against a body nested 100,000 deep (a few hundred KB) answering 500 with a
    RecursionError traceback in the log, instead of a clear 400."""
    client = await gateway(api_key=API_KEY)
    for body in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        response = await client.request(
            method, path, data=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status == 400, await response.text()
        error = (await response.json())["error"]
        assert error["code"] == "bad_json" and "nested" in error["message"]
    assert (await client.get("/healthz")).status == 200


async def test_exactly_4000_characters_can_be_published(gateway: StartGateway) -> None:
    """Guards against an off-by-one in the API's length check."""
    client = await gateway(api_key=API_KEY)
    response = await client.post(
        "/api/rooms/lobby/messages", json={"from": "ops", "text": "x" * 4000}, headers=AUTH
    )
    assert response.status == 201


async def test_the_bearer_scheme_is_case_insensitive(gateway: StartGateway) -> None:
    """Guards against clients that send 'bearer' (lower case) being refused."""
    client = await gateway(api_key=API_KEY)
    response = await client.post(
        "/api/rooms/lobby/messages",
        json={"from": "ops", "text": "hi"},
        headers={"Authorization": f"bearer {API_KEY}"},
    )
    assert response.status == 201


async def test_a_publish_that_is_not_valid_unicode_is_refused(gateway: StartGateway) -> None:
    """Guards against the API silencing a room with text no WebSocket frame can carry."""
    client = await gateway(api_key=API_KEY)
    response = await client.post(
        "/api/rooms/lobby/messages",
        data=b'{"from": "ops", "text": "a\\ud800b"}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status == 400


async def test_connections_have_a_series_per_mode_from_the_start(client: TestClient) -> None:
    """Guards against chat_connections{mode} missing until a first connection of that mode
    (a dashboard then shows "no data" rather than 0)."""
    for mode in ("json", "text"):
        assert await read_metric(client, f'chat_connections{{mode="{mode}"}}') == 0
