"""The frame reader (gateway/inbound.py) parses client frames across any chunking.

TCP splits a client's bytes anywhere: in a payload, inside a header, inside its
extended length or mask key. Whatever the split, the reader must return exactly the
messages sent (fragments joined, payloads unmasked, control frames in their place, also
between fragments), refuse at the right frame, and after a refusal or a close of the
server's return nothing but the client's Close. No I/O here: the connection-level
behaviour is tested through real sockets in tests/test_closing.py and test_frames.py.
"""

from __future__ import annotations

import itertools
import os
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inbound import UNMASKED_REASON, FrameReader, Message, size_text, unmask
from tooling.wsclient import BINARY, CLOSE, CONTINUATION, PING, TEXT, encode_frame


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame carrying `payload` (masked with a random key unless told not)."""
    return encode_frame(opcode, payload, masked=masked, fin=fin)


def fragments(payload: bytes, cuts: list[int]) -> list[bytes]:
    """`payload` cut at `cuts` (an empty fragment where a cut falls on an end)."""
    points = [0, *sorted({c % (len(payload) + 1) for c in cuts}), len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(points)]


def message_frames(opcode: int, payload: bytes, cuts: list[int], ping: bytes | None) -> bytes:
    """`payload` as one message in fragments cut at `cuts`; `ping` (if any) after the
    first fragment."""
    parts = fragments(payload, cuts)
    out = []
    for index, part in enumerate(parts):
        out.append(frame(opcode if index == 0 else CONTINUATION, part, fin=index == len(parts) - 1))
        if index == 0 and ping is not None:
            out.append(frame(PING, ping))
    return b"".join(out)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the positions `cuts` (any order, duplicates allowed)."""
    points = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def feed_all(reader: FrameReader, stream: bytes, cuts: list[int]) -> list[Message]:
    out: list[Message] = []
    for chunk in chunks(stream, cuts):
        out += reader.feed(chunk)
    return out


PAYLOAD = st.one_of(
    st.binary(max_size=300), st.sampled_from([b"x" * n for n in (125, 126, 127, 65535, 65536)])
)
MESSAGE = st.tuples(
    st.sampled_from([TEXT, BINARY]),
    PAYLOAD,
    st.lists(st.integers(0, 1 << 17), max_size=3),  # where its fragments are cut
    st.one_of(st.none(), st.binary(max_size=125)),  # a ping between its fragments
)
MESSAGES = st.lists(MESSAGE, max_size=5)
CUTS = st.lists(st.integers(0, 1 << 20), max_size=40)


@settings(max_examples=200, deadline=None)
@given(MESSAGES, CUTS)
def test_a_well_formed_stream_is_read_whole_however_it_is_cut(
    messages: list[tuple[int, bytes, list[int], bytes | None]], cuts: list[int]
) -> None:
    """Guards against a header or mask key split across chunks being misread (a false
    1002 or 1009, a payload unmasked with the wrong key phase), fragments joined wrongly,
    or a ping between fragments lost or held back until the message ends."""
    stream = b"".join(message_frames(op, data, at, ping) for op, data, at, ping in messages)
    expected: list[Message] = []
    for opcode, data, at, ping in messages:
        # the ping goes after the first fragment: before the message when it has more
        ping_first = len(fragments(data, at)) > 1
        if ping is not None and ping_first:
            expected.append((PING, ping))
        expected.append((opcode, data))
        if ping is not None and not ping_first:
            expected.append((PING, ping))
    reader = FrameReader(max_message=1 << 20)
    assert feed_all(reader, stream, cuts) == expected
    assert reader.violation is None


@settings(max_examples=200, deadline=None)
@given(MESSAGES, MESSAGES, CUTS)
def test_an_unmasked_frame_is_refused_and_only_the_clients_close_is_read_after_it(
    before: list[tuple[int, bytes, list[int], bytes | None]],
    after: list[tuple[int, bytes, list[int], bytes | None]],
    cuts: list[int],
) -> None:
    """Guards against an unmasked frame being read as a message, the messages before it
    being lost, or the client's Close (after other frames) being missed."""
    head = b"".join(message_frames(op, data, [], None) for op, data, _, _ in before)
    bad = frame(TEXT, b"u" * 40, masked=False)
    tail = b"".join(message_frames(op, data, at, ping) for op, data, at, ping in after)
    close = frame(CLOSE, (1002).to_bytes(2, "big"))
    reader = FrameReader(max_message=1 << 20)
    got = feed_all(reader, head + bad + tail + close, cuts)
    assert reader.violation == (1002, UNMASKED_REASON)
    assert got == [(op, data) for op, data, _, _ in before] + [(CLOSE, b"\x03\xea")]


def test_fragments_count_together_and_control_frames_do_not() -> None:
    """Guards against the frame limit applying to each fragment alone (a huge message in
    small pieces), or counting a ping inside a fragmented message."""
    reader = FrameReader(max_message=1000)
    ok = frame(TEXT, b"a" * 500, fin=False) + frame(PING, b"p" * 100)
    ok += frame(CONTINUATION, b"b" * 500)
    assert reader.feed(ok) == [(PING, b"p" * 100), (TEXT, b"a" * 500 + b"b" * 500)]
    assert reader.violation is None
    reader.feed(frame(TEXT, b"c" * 600, fin=False))
    assert reader.feed(frame(CONTINUATION, b"d" * 401)) == []
    assert reader.violation == (1009, "frame too large (1000 bytes at most)")


def test_a_character_split_between_fragments_is_joined_before_it_is_read() -> None:
    """Guards against fragments being taken one by one: a UTF-8 character may be cut
    between two of them, and only the whole message must be valid."""
    text = "héllo €".encode()
    reader = FrameReader(max_message=1000)
    got = reader.feed(frame(TEXT, text[:2], fin=False) + frame(CONTINUATION, text[2:]))
    assert got == [(TEXT, text)]
    assert got[0][1].decode() == "héllo €"


def test_after_the_servers_close_only_the_clients_close_is_returned() -> None:
    """Guards against frames the client sent after the server's Close being run."""
    reader = FrameReader(max_message=1000)
    reader.closing = True
    stream = frame(TEXT, b"late") + frame(PING, b"") + frame(CLOSE, b"\x03\xe8bye")
    assert reader.feed(stream) == [(CLOSE, b"\x03\xe8bye")]


def test_unmask_is_the_rfc_xor() -> None:
    for size in (0, 1, 3, 4, 5, 126, 1000):
        payload, key = os.urandom(size), os.urandom(4)
        assert unmask(payload, key) == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_the_limit_reads_as_a_person_would_say_it() -> None:
    assert size_text(64 * 1024) == "64 KiB"
    assert size_text(1500) == "1500 bytes"


def test_a_close_over_the_control_limit_is_not_kept() -> None:
    """Guards against a Close over 125 bytes being kept whole once the reader is closing
    (where no other limit applies): its 64-bit length could make the node hold
    whatever the client sends."""
    reader = FrameReader(max_message=1000)
    reader.closing = True
    stream = frame(CLOSE, b"\x03\xe8" + b"r" * 2000) + frame(CLOSE, b"\x03\xe8")
    assert reader.feed(stream) == [(CLOSE, b"\x03\xe8")]


def test_a_64_bit_length_with_its_high_bit_set_is_refused_with_1002() -> None:
    """Guards against RFC 6455 5.2 (the most significant bit of a 64-bit length MUST
    be 0) being read as a message over the limit (1009) instead of a broken frame."""
    reader = FrameReader(max_message=1000)
    assert reader.feed(encode_frame(TEXT, b"", length=1 << 63)) == []
    assert reader.violation is not None and reader.violation[0] == 1002


def test_a_message_in_tiny_fragments_holds_about_its_own_size() -> None:
    """Guards against each fragment being kept as an object of its own: empty
    continuation frames (6 bytes each on the wire) add nothing to the message's size,
    so the frame limit never stops them, and one-byte ones cost dozens of bytes each,
    so a connection could hold far more than the limit while its message is under way."""
    limit = 1 << 14
    reader = FrameReader(max_message=limit)
    first = frame(TEXT, b"", fin=False)
    empty = b"".join(frame(CONTINUATION, b"", fin=False) for _ in range(50_000))
    ones = b"".join(frame(CONTINUATION, b"x", fin=False) for _ in range(limit - 1))
    tracemalloc.start()
    try:
        assert reader.feed(first + empty + ones) == []
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert reader.violation is None
    assert held < 4 * limit, f"{held} bytes held for a message of {limit - 1}"
    assert reader.feed(frame(CONTINUATION, b"!")) == [(TEXT, b"x" * (limit - 1) + b"!")]
