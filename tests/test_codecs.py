"""The codecs are pure functions: frames in, commands out; events in, frames out."""

from __future__ import annotations

import json

import pytest

from gateway.codecs.json import JsonCodec
from gateway.codecs.text import TextCodec
from gateway.commands import DirectSend, HistoryQuery, Join, ListRooms, Quit, Send, Who
from gateway.errors import ErrorCode, ProtocolError
from gateway.events import Direct, Message, PresenceChange, RoomList

TEXT = TextCodec()
JSON = JsonCodec()


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Send(room=None, text="hello")),
        ("//etc", Send(room=None, text="/etc")),
        ("/who", Who(room=None)),
        ("/JOIN dev", Join(room="dev")),
        ("/rooms", ListRooms()),
        ("/msg bob hi there", DirectSend(to="bob", text="hi there")),
        ('/msg "a b" hi', DirectSend(to="a b", text="hi")),
        ("/history", HistoryQuery(room=None, limit=20)),
        ("/history 5", HistoryQuery(room=None, limit=5)),
        ("/quit", Quit()),
        ("   ", None),
    ],
)
def test_text_lines_decode_to_commands(line: str, command: object) -> None:
    """Guards against a slash command read as something else."""
    assert TEXT.decode(line) == command


@pytest.mark.parametrize(
    "line", ["/nope", "/join", "/join a b", "/history x", "/history 0", "/msg bob", "/who me"]
)
def test_bad_text_commands_are_bad_frames(line: str) -> None:
    """Guards against a malformed command silently doing nothing."""
    with pytest.raises(ProtocolError) as caught:
        TEXT.decode(line)
    assert caught.value.code is ErrorCode.BAD_FRAME


def test_json_frames_decode_with_their_ref() -> None:
    """Guards against losing the ref that ties an answer to its request."""
    frame = json.dumps({"type": "send", "room": "r", "text": "t", "id": "i", "ref": "x"})
    assert JSON.decode(frame) == Send(room="r", text="t", id="i", ref="x")


@pytest.mark.parametrize(
    ("frame", "ref"),
    [
        ("not json", None),
        ("[1]", None),
        ('{"type":"send","room":1,"text":"t","ref":"a"}', "a"),
        ('{"type":"nope","ref":"b"}', "b"),
        ('{"type":"history","room":"r","limit":true}', None),
        ('{"type":"ping","ref":5}', None),
        ("[" * 100_000 + "]" * 100_000, None),
    ],
)
def test_bad_json_frames_are_bad_frames_with_their_ref(frame: str, ref: str | None) -> None:
    """Guards against an exception (not an error frame) on hostile input."""
    with pytest.raises(ProtocolError) as caught:
        JSON.decode(frame)
    assert caught.value.code is ErrorCode.BAD_FRAME
    assert caught.value.ref == ref


def test_events_encode_in_both_modes() -> None:
    """Guards against the two modes drifting from docs/protocol.md's shapes."""
    message = Message("lobby", "alice", "hi", "e-1", 123, "n/1")
    assert json.loads(JSON.encode(message) or "") == {
        "type": "message", "room": "lobby", "from": "alice", "text": "hi",
        "offset": "e-1", "ts": 123,
    }  # fmt: skip
    assert TEXT.encode(message) == "alice: hi"
    assert TEXT.encode(PresenceChange("lobby", "leave", "bob")) == "* bob left lobby"
    dm = Direct("alice", "bob", "psst", 1)
    assert TEXT.encode(dm) == "[dm] alice: psst"
    assert TEXT.encode(dm, outgoing=True) == "[dm -> bob] psst"
    assert TEXT.encode(RoomList([("a", 1), ("b", 2)], 2)) == "* rooms: a (1), b (2)"
    assert TEXT.encode(RoomList([("a", 1)], 3)) == "* rooms: a (1) and 2 more"
