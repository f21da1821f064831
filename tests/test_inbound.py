"""The frame watch (gateway/inbound.py) reads frame headers across any chunking.

TCP splits a client's bytes anywhere: in a payload, inside a header, inside its
extended length or mask key. Whatever the split, the watch must hand aiohttp exactly the
bytes it got (no false refusal of a well-formed stream), refuse at the right frame, and
see the client's Close exactly when its last byte has come. The transport and aiohttp's
protocol are stand-ins that record what they are given; the connection-level behaviour
is tested through real sockets in tests/test_closing.py.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inbound import UNMASKED_REASON, FrameWatch, size_text
from tooling.wsclient import BINARY, CLOSE, CONTINUATION, PING, TEXT, encode_frame


def frame(opcode: int, length: int, *, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame with a `length`-byte payload (its bytes do not matter here)."""
    return encode_frame(opcode, b"p" * length, fin=fin, masked=masked)


class Inner(asyncio.Protocol):
    """aiohttp's protocol, as the watch sees it: what it was handed."""

    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data


class Transport(asyncio.Transport):
    """A transport that only keeps its protocol."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def is_closing(self) -> bool:
        return False

    def is_reading(self) -> bool:
        return True


class Watched:
    """A watch on a stand-in connection; the refusals it reported."""

    def __init__(self, max_message: int) -> None:
        self.inner = Inner()
        self.watch = FrameWatch(Transport(self.inner), max_message)
        self.refused: list[tuple[int, str]] = []
        self.watch.attach(lambda code, reason: self.refused.append((code, reason)))

    def closed_by_peer(self) -> bool:
        return self.watch._peer_closed.done()


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the positions `cuts` (any order, duplicates allowed)."""
    points = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


LENGTHS = st.one_of(st.integers(0, 300), st.sampled_from([125, 126, 127, 65535, 65536, 70000]))
FRAME = st.one_of(
    st.tuples(st.sampled_from([TEXT, BINARY]), LENGTHS),
    st.tuples(st.just(PING), st.integers(0, 125)),  # a control frame: 125 bytes at most
)
FRAMES = st.lists(FRAME, max_size=6)
CUTS = st.lists(st.integers(0, 1 << 20), max_size=40)


def run(check: Any) -> None:
    async def main() -> None:
        check()

    asyncio.run(main())


@settings(max_examples=200, deadline=None)
@given(FRAMES, CUTS)
def test_a_well_formed_stream_reaches_aiohttp_whole_however_it_is_cut(
    frames: list[tuple[int, int]], cuts: list[int]
) -> None:
    """Guards against a header split across chunks being misread (a false 1002 or
    1009, or bytes lost on their way to aiohttp)."""
    stream = b"".join(frame(opcode, length) for opcode, length in frames)

    def check() -> None:
        watched = Watched(max_message=1 << 20)
        for chunk in chunks(stream, cuts):
            watched.watch.data_received(chunk)
        assert watched.refused == []
        assert bytes(watched.inner.data) == stream

    run(check)


@settings(max_examples=200, deadline=None)
@given(FRAMES, FRAMES, CUTS)
def test_an_unmasked_frame_is_refused_and_the_clients_close_is_seen_after_it(
    before: list[tuple[int, int]], after: list[tuple[int, int]], cuts: list[int]
) -> None:
    """Guards against an unmasked frame reaching aiohttp, the frames before it not
    reaching it, or the client's Close (after other frames) being missed or seen early."""
    head = b"".join(frame(opcode, length) for opcode, length in before)
    bad = frame(TEXT, 40, masked=False)
    tail = b"".join(frame(opcode, length) for opcode, length in after)
    close = frame(CLOSE, 2)
    stream = head + bad + tail + close

    def check() -> None:
        watched = Watched(max_message=1 << 20)
        fed = 0
        for chunk in chunks(stream, cuts):
            assert not watched.closed_by_peer()
            watched.watch.data_received(chunk)
            fed += len(chunk)
        assert watched.closed_by_peer() and fed == len(stream)
        assert watched.refused == [(1002, UNMASKED_REASON)]
        handed = bytes(watched.inner.data)
        assert stream.startswith(handed) and len(head) <= len(handed) < len(head) + 2

    run(check)


def test_fragments_count_together_and_control_frames_do_not() -> None:
    """Guards against the frame limit applying to each fragment alone (a huge message in
    small pieces), or counting a ping inside a fragmented message."""

    def check() -> None:
        watched = Watched(max_message=1000)
        ok = frame(TEXT, 500, fin=False) + frame(PING, 100) + frame(CONTINUATION, 500)
        watched.watch.data_received(ok)
        assert watched.refused == []
        watched.watch.data_received(frame(TEXT, 600, fin=False))
        watched.watch.data_received(frame(CONTINUATION, 401))
        assert watched.refused == [(1009, "frame too large (1000 bytes at most)")]

    run(check)


def test_the_limit_reads_as_a_person_would_say_it() -> None:
    assert size_text(64 * 1024) == "64 KiB"
    assert size_text(1500) == "1500 bytes"
