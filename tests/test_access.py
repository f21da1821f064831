"""Room access from the token (docs/protocol.md, "Which rooms a token opens"): the
`rooms` claim decides where a user may go and what they may read, on every broker, in
both modes and over REST."""

from __future__ import annotations

import jwt
import pytest
from aiohttp.test_utils import TestClient

from gateway.__main__ import token_main
from gateway.access import Rooms
from gateway.auth import mint
from tests.conftest import TextPeer
from tests.plugins.auth import SECRET, Gateway, connect_json, login, signed

TEAM = ["lobby", "team-*"]  # the rooms of the limited user's token


async def limited(client: TestClient, name: str = "tess", room: str = "lobby") -> object:
    """A JSON connection whose token lets it into `lobby` and `team-*` only."""
    peer = await connect_json(client, token=mint(SECRET, name, 60, rooms=TEAM), room=room)
    peer.welcome = await peer.expect("welcome")
    peer.subscribed = await peer.expect("subscribed", room=room)
    return peer


@pytest.fixture
async def node(gateway: Gateway) -> TestClient:
    return await gateway(jwt_secret=SECRET, api_key="the-api-key")


async def test_a_limited_token_joins_its_rooms_and_is_refused_the_others(
    node: TestClient,
) -> None:
    """Guards against a `rooms` claim that is ignored (any room joined and read), and
    against a refusal that closes the connection instead of answering the one frame."""
    tess = await limited(node)
    joined = await tess.request("join", room="team-a")
    assert joined["type"] == "subscribed" and joined["room"] == "team-a"
    for frame in (
        {"type": "join", "room": "secret"},
        {"type": "join", "room": "team"},
        {"type": "history", "room": "secret"},
        {"type": "who", "room": "secret"},
    ):
        answer = await tess.request(frame.pop("type"), **frame)
        assert answer["type"] == "error" and answer["code"] == "forbidden", answer  # fmt: skip
    ack = await tess.request("send", room="team-a", text="still connected")
    assert ack["type"] == "ack"
    alice = await login(node, "alice", room="secret")  # no claim: every room
    await alice.request("send", room="secret", text="for the few")
    rooms = await tess.request("rooms")
    assert "secret" not in [r["room"] for r in rooms["rooms"]], rooms
    assert {"lobby", "team-a"} <= {r["room"] for r in rooms["rooms"]}


async def test_a_forbidden_first_room_closes_1008_before_welcome(node: TestClient) -> None:
    """Guards against a user entering a room through the URL that a join would refuse."""
    peer = await connect_json(node, token=mint(SECRET, "tess", 60, rooms=TEAM), room="secret")
    first = await peer.recv()
    assert first["type"] == "error" and first["code"] == "forbidden", first
    assert await peer.close_code() == 1008
    assert not [f for f in peer.frames if f.get("type") == "welcome"]


async def test_text_mode_is_refused_forbidden_rooms_too(node: TestClient) -> None:
    """Guards against /join in text mode slipping past the claim."""
    token = mint(SECRET, "tess", 60, rooms=TEAM)
    ws = await node.ws_connect("/ws", params={"token": token})
    peer = TextPeer(ws)
    await peer.expect_line("* you are in lobby...")
    await peer.say("/join secret")
    line = await peer.expect_line("! ...")
    assert "forbidden" in line or "does not let you" in line, line
    await peer.say("/join team-x")
    await peer.expect_line("* you are in team-x...")


async def test_the_rest_reads_obey_the_token(node: TestClient) -> None:
    """Guards against reading a forbidden room's history or members over REST."""
    alice = await login(node, "alice", room="secret")
    await alice.request("send", room="secret", text="for the few")
    tess = {"Authorization": f"Bearer {mint(SECRET, 'tess', 60, rooms=TEAM)}"}
    for path in ("/api/rooms/secret/messages", "/api/rooms/secret/members"):
        response = await node.get(path, headers=tess)
        assert response.status == 403, path
        assert (await response.json())["error"]["code"] == "forbidden"
    assert (await node.get("/api/rooms/team-a/messages", headers=tess)).status == 200
    listed = await (await node.get("/api/rooms", headers=tess)).json()
    assert "secret" not in [r["room"] for r in listed["rooms"]]
    operator = {"Authorization": "Bearer the-api-key"}
    messages = await (await node.get("/api/rooms/secret/messages", headers=operator)).json()
    assert [m["text"] for m in messages["messages"]] == ["for the few"]


@pytest.mark.parametrize("broker_kind", ["redis"])
async def test_the_claim_holds_on_every_node(gateway: Gateway) -> None:
    """Guards against a node that checks the claim only where the token was minted
    (it holds no state: each node reads the token)."""
    nodes = [await gateway(jwt_secret=SECRET, node_id=f"n{i}") for i in range(2)]
    for node in nodes:
        tess = await limited(node)
        assert (await tess.request("join", room="secret"))["code"] == "forbidden"
        assert (await tess.request("join", room="team-b"))["type"] == "subscribed"


@pytest.mark.parametrize(
    "claim",
    ["lobby", [1], ["has space"], ["a*b"], ["x" * 65], ["*"] * 101],
    ids=["not-a-list", "not-a-string", "space", "star-inside", "too-long", "too-many"],
)
async def test_a_malformed_rooms_claim_is_unauthorized(node: TestClient, claim: object) -> None:
    """Guards against a claim the gateway cannot read being taken as 'every room'."""
    peer = await connect_json(node, token=signed({"sub": "tess", "rooms": claim}))
    first = await peer.recv()
    assert first["type"] == "error" and first["code"] == "unauthorized", first
    assert "rooms" in first["message"]
    assert await peer.close_code() == 1008


def test_patterns_match_names_and_prefixes() -> None:
    rooms = Rooms(("lobby", "team-*"))
    assert rooms.allows("lobby") and rooms.allows("team-") and rooms.allows("team-a")
    assert not rooms.allows("lobby2") and not rooms.allows("team") and not rooms.allows("x")
    assert Rooms(("*",)).allows("anything") and not Rooms(()).allows("lobby")


def test_the_token_command_writes_rooms_and_moderates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Guards against the documented moderator example minting a token without them."""
    argv = ["tess", "--rooms", "lobby, team-*", "--moderates", "team-a", "--jwt-secret", SECRET]
    assert token_main(argv) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["rooms"] == ["lobby", "team-*"] and claims["moderates"] == ["team-a"]
    with pytest.raises(SystemExit):
        token_main(["tess", "--rooms", "a b", "--jwt-secret", SECRET])
    assert "not a room pattern" in capsys.readouterr().err
