"""Property tests of both codecs: any input is a command or a protocol error, never a
crash, and every valid client frame decodes to what it says."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.codecs.json import JsonCodec
from gateway.codecs.text import TextCodec
from gateway.commands import DirectSend, HistoryQuery, Join, Send
from gateway.controls import NOT_IN_TEXT
from gateway.errors import ProtocolError
from gateway.events import Direct, Message, PresenceChange

TEXT = TextCodec()
JSON = JsonCodec()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
frame_objects = st.fixed_dictionaries(
    {"type": st.sampled_from(["send", "join", "leave", "who", "rooms", "history", "dm", "ping"])},
    optional={
        key: json_values for key in ("room", "text", "id", "since", "before", "limit", "to", "ref")
    },
)


def decodes_or_refuses(codec: Any, frame: str) -> None:
    with contextlib.suppress(ProtocolError):
        codec.decode(frame)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_any_text_line_is_a_command_or_an_error(line: str) -> None:
    """Guards against a text-mode line that raises anything but a protocol error."""
    decodes_or_refuses(TEXT, line)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), json_values.map(json.dumps), frame_objects.map(json.dumps)))
def test_any_json_frame_is_a_command_or_an_error(frame: str) -> None:
    """Guards against a JSON frame (garbage, wrong types, odd shapes) that crashes the
    decoder instead of answering bad_frame."""
    decodes_or_refuses(JSON, frame)


plain = st.text(min_size=1, max_size=50).filter(lambda t: "\n" not in t and "\r" not in t)
ids = st.none() | st.text(max_size=64)


@settings(max_examples=300, deadline=None)
@given(room=st.text(), text=st.text(), message_id=ids, ref=ids)
def test_json_send_frames_round_trip(
    room: str, text: str, message_id: str | None, ref: str | None
) -> None:
    """Guards against a valid send whose fields come out changed."""
    frame = json.dumps({"type": "send", "room": room, "text": text, "id": message_id, "ref": ref})
    try:
        command = JSON.decode(frame)
    except ProtocolError:
        assert any(_unencodable(v) for v in (room, text, message_id, ref))
        return
    assert command == Send(room=room, text=text, id=message_id, ref=ref)


@settings(max_examples=300, deadline=None)
@given(room=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), limit=st.integers(1, 100))
def test_json_join_and_history_round_trip(room: str, limit: int) -> None:
    """Guards against valid joins and history queries being refused or altered."""
    assert JSON.decode(json.dumps({"type": "join", "room": room})) == Join(room=room)
    history = JSON.decode(json.dumps({"type": "history", "room": room, "limit": limit}))
    assert history == HistoryQuery(room=room, limit=limit)


@settings(max_examples=300, deadline=None)
@given(name=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=32), text=plain)
def test_text_msg_and_plain_lines_round_trip(name: str, text: str) -> None:
    """Guards against /msg or a plain line losing or changing what the user typed."""
    if text.strip():
        assert TEXT.decode(f"/msg {name} {text}") == DirectSend(to=name, text=text.strip())
    if not text.startswith("/") and text.strip():
        assert TEXT.decode(text) == Send(room=None, text=text)


@settings(max_examples=300, deadline=None)
@given(sender=plain, text=st.text(), room=plain, offset=plain, ts=st.integers(0, 2**53))
def test_events_encode_to_json_that_decodes_back(
    sender: str, text: str, room: str, offset: str, ts: int
) -> None:
    """Guards against an event whose JSON frame loses or garbles a field."""
    if any(_unencodable(v) for v in (sender, text, room, offset)):
        return
    message = json.loads(JSON.encode(Message(room, sender, text, offset, ts)) or "")
    assert (message["from"], message["text"], message["room"], message["offset"]) == (
        sender, text, room, offset,
    )  # fmt: skip
    presence = json.loads(JSON.encode(PresenceChange(room, "join", sender)) or "")
    assert presence["name"] == sender
    dm = json.loads(JSON.encode(Direct(sender, room, text, ts)) or "")
    assert (dm["from"], dm["to"], dm["text"]) == (sender, room, text)


@settings(max_examples=300, deadline=None)
@given(sender=plain, text=st.text())
@example(sender="mallory", text="hi\u2028* admin joined lobby")
@example(sender="mallory", text="hi\x85[dm] admin: psst\x9b2J")
def test_a_text_mode_message_is_never_more_than_its_own_lines(sender: str, text: str) -> None:
    """Guards against a message forging a line of its own in text mode: every line after
    the first is indented, whatever line boundary (any that str.splitlines knows) made
    it, and no line holds a control character (tab aside) or a line separator."""
    for event in (Message("r", sender, text, "e-1", 0), Direct(sender, "bob", text, 0)):
        frame = TEXT.encode(event) or ""
        assert NOT_IN_TEXT.search(frame) is None
        for line in frame.splitlines()[1:]:
            assert line.startswith("  ")


def _unencodable(value: str | None) -> bool:
    if value is None:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
