"""JSON mode (docs/protocol.md, "JSON mode") against a running node."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.conftest import join_json


async def test_welcome_is_the_first_frame_then_subscribed(client: TestClient) -> None:
    """Guards against a connection that gets events before it knows who and where it is."""
    alice = await join_json(client, "alice")
    assert alice.frames[0] == {
        "type": "welcome",
        "name": "alice",
        "node": "test-node",
        "session": alice.welcome["session"],
        "protocol": 1,
    }
    assert alice.frames[1] == {
        "type": "subscribed",
        "room": "lobby",
        "members": ["alice"],
        "offset": None,
        "recovered": False,
    }


async def test_send_is_acked_with_its_offset_and_reaches_every_member(client: TestClient) -> None:
    """Guards against a sender that never learns its offset, or members that miss a message."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    await alice.send(type="send", room="lobby", text="hello", ref="s1")
    ack = await alice.expect("ack", ref="s1")
    for peer in (alice, bob):
        message = await peer.expect("message")
        assert message["offset"] == ack["offset"]
        assert (message["room"], message["from"], message["text"]) == ("lobby", "alice", "hello")
        assert isinstance(message["ts"], int) and message["ts"] > 1_600_000_000_000


async def test_from_is_stamped_by_the_server(client: TestClient) -> None:
    """Guards against a client speaking as someone else by putting 'from' in its frame."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    await alice.send(type="send", room="lobby", text="i am bob", **{"from": "bob"})
    message = await bob.expect("message")
    assert message["from"] == "alice"


async def test_a_connection_can_be_in_several_rooms(client: TestClient) -> None:
    """Guards against JSON connections limited to one room, or messages crossing rooms."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob", room="dev")
    answer = await alice.request("join", room="dev")
    assert answer["type"] == "subscribed" and answer["members"] == ["alice", "bob"]
    await bob.send(type="send", room="dev", text="in dev")
    message = await alice.expect("message")
    assert message["room"] == "dev"
    await alice.send(type="send", room="lobby", text="in lobby", ref="l")
    await alice.expect("ack", ref="l")
    await bob.send(type="send", room="dev", text="still dev", ref="d")
    await bob.expect("ack", ref="d")
    last = await bob.expect("message", text="still dev")
    assert all(f.get("text") != "in lobby" for f in bob.frames), "lobby leaked into dev"
    assert last["room"] == "dev"


async def test_leave_answers_unsubscribed_and_stops_delivery(client: TestClient) -> None:
    """Guards against a left room that keeps sending its messages."""
    alice = await join_json(client, "alice")
    await alice.request("join", room="dev")
    bob = await join_json(client, "bob", room="dev")
    assert (await alice.request("leave", room="dev"))["type"] == "unsubscribed"
    await bob.send(type="send", room="dev", text="gone?")
    await alice.send(type="send", room="lobby", text="marker", ref="m")
    await alice.expect("message", text="marker")
    assert all(f.get("text") != "gone?" for f in alice.frames)
    error = await alice.request("send", room="dev", text="x")
    assert error["type"] == "error" and error["code"] == "not_in_room"


async def test_who_rooms_and_ping(client: TestClient) -> None:
    """Guards against wrong member lists or room counts."""
    alice = await join_json(client, "alice")
    await join_json(client, "Bob")
    await join_json(client, "carol", room="dev")
    assert (await alice.request("who", room="lobby"))["members"] == ["alice", "Bob"]
    rooms = await alice.request("rooms")
    assert rooms["rooms"] == [{"room": "dev", "members": 1}, {"room": "lobby", "members": 2}]
    assert (await alice.request("ping"))["type"] == "pong"


async def test_history_is_oldest_first_and_pages_with_before(client: TestClient) -> None:
    """Guards against history in the wrong order or paging that repeats or skips."""
    alice = await join_json(client, "alice")
    offsets = []
    for i in range(5):
        offsets.append((await alice.request("send", room="lobby", text=f"m{i}"))["offset"])
    page = await alice.request("history", room="lobby", limit=2)
    assert [m["text"] for m in page["messages"]] == ["m3", "m4"]
    older = await alice.request("history", room="lobby", limit=10, before=offsets[3])
    assert [m["text"] for m in older["messages"]] == ["m0", "m1", "m2"]
    assert [m["offset"] for m in older["messages"]] == offsets[:3]


async def test_idempotent_id_is_acked_again_and_delivered_once(client: TestClient) -> None:
    """Guards against a resend after a lost ack turning into a duplicate message."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    first = await alice.request("send", room="lobby", text="once", id="msg-1")
    again = await alice.request("send", room="lobby", text="once", id="msg-1")
    assert first["type"] == again["type"] == "ack"
    assert first["offset"] == again["offset"]
    await alice.send(type="send", room="lobby", text="marker", ref="m")
    await bob.expect("message", text="marker")
    assert [f.get("text") for f in bob.frames if f["type"] == "message"] == ["once", "marker"]


async def test_the_same_id_from_another_sender_is_another_message(client: TestClient) -> None:
    """Guards against ids shared across senders, which would silently drop messages."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    a = await alice.request("send", room="lobby", text="a", id="1")
    b = await bob.request("send", room="lobby", text="b", id="1")
    assert a["offset"] != b["offset"]


async def test_the_same_id_in_another_room_is_another_message(client: TestClient) -> None:
    """Guards against an id remembered across rooms: the resend in another room would be
    acked with an offset of the first room and never delivered (ids live beside each
    room's history, in its slot on a Redis Cluster)."""
    alice = await join_json(client, "alice")
    await alice.request("join", room="dev")
    a = await alice.request("send", room="lobby", text="a", id="1")
    b = await alice.request("send", room="dev", text="b", id="1")
    assert a["type"] == b["type"] == "ack"
    await alice.expect("message", room="dev", text="b")
    again = await alice.request("send", room="dev", text="b", id="1")
    assert again["offset"] == b["offset"]


async def test_direct_messages_reach_the_recipient_only(client: TestClient) -> None:
    """Guards against DMs broadcast to a room, or lost."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob", room="dev")
    carol = await join_json(client, "carol")
    ack = await alice.request("dm", to="BOB", text="psst")
    assert ack["type"] == "ack" and "offset" not in ack
    dm = await bob.expect("dm")
    assert (dm["from"], dm["text"]) == ("alice", "psst")
    await alice.send(type="send", room="lobby", text="marker", ref="m")
    await carol.expect("message", text="marker")
    assert all(f["type"] != "dm" for f in carol.frames)
    missing = await alice.request("dm", to="nobody", text="hello?")
    assert missing["code"] == "user_not_found"


async def test_ordering_in_a_room_is_the_same_for_every_member(client: TestClient) -> None:
    """Guards against members seeing interleaved senders in different orders."""
    peers = [await join_json(client, name) for name in ("a", "b", "c")]
    for i in range(20):
        for peer in peers[:2]:
            await peer.send(type="send", room="lobby", text=f"{i}")
    seen = []
    for peer in peers:
        messages = [await peer.expect("message") for _ in range(40)]
        seen.append([m["offset"] for m in messages])
    assert seen[0] == seen[1] == seen[2]
    assert len(set(seen[0])) == 40


async def test_the_ack_comes_before_the_message_and_order_holds(client: TestClient) -> None:
    """Guards against a sender seeing its message before the ack (docs/protocol.md,
    "JSON mode"), and against the ack-first rule reordering a room for the sender."""
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    for i in range(10):
        await alice.send(type="send", room="lobby", text=f"a{i}", ref=f"a{i}")
        await bob.send(type="send", room="lobby", text=f"b{i}")
    for _ in range(20):
        await bob.expect("message")
    for _ in range(20):
        await alice.expect("message")
    kinds = [(f["type"], f.get("ref") or f.get("text")) for f in alice.frames]
    for i in range(10):
        assert kinds.index(("ack", f"a{i}")) < kinds.index(("message", f"a{i}"))
    order = [f["offset"] for f in alice.frames if f["type"] == "message"]
    assert order == [f["offset"] for f in bob.frames if f["type"] == "message"]
