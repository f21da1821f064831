"""The link (gateway/link.py) on a stand-in transport: what real sockets make hard to
see. Messages run one at a time, in order, and a client that sends faster than they
run is stopped reading (not buffered without bound), then read again once the queue
has drained; the heartbeat pings a quiet peer and cuts one that does not answer."""

from __future__ import annotations

import asyncio
import os

from gateway.link import INBOX_PAUSE, Item, Link
from gateway.wire import Corker
from tooling.wsclient import TEXT, encode_frame


class Transport(asyncio.Transport):
    """Keeps what is written and whether reading is paused."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.pauses = 0
        self.closing = False
        self.wrote = asyncio.Event()
        self.cut = asyncio.Event()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def is_closing(self) -> bool:
        return self.closing

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.wrote.set()

    def abort(self) -> None:
        self.closing = True
        self.cut.set()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class Owner:
    """Runs each message only when `gate` is open; records the rest."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.ran: list[Item] = []
        self.closes: list[tuple[int, str]] = []

    def refused(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def peer_closing(self, code: int) -> None:
        self.closes.append((code, ""))

    async def run(self, item: Item) -> None:
        await self.gate.wait()
        self.ran.append(item)

    def lost(self) -> None: ...


def make_link(owner: Owner, heartbeat: float = 0) -> tuple[Link, Transport]:
    transport = Transport()
    link = Link(
        transport,
        corker=Corker(),
        send_limit=1 << 20,
        max_message=1 << 16,
        heartbeat=heartbeat,
        owner=owner,
    )
    return link, transport


async def test_a_fast_sender_is_paused_and_read_again_once_its_messages_ran() -> None:
    """Guards against a client's messages piling up without bound while its commands
    wait (the transport must stop reading), against reading never resuming, and
    against messages running out of order or twice."""
    owner = Owner()
    link, transport = make_link(owner)
    link.serve()
    count = INBOX_PAUSE + 8
    link.data_received(b"".join(encode_frame(TEXT, str(i).encode()) for i in range(count)))
    assert not transport.reading and transport.pauses == 1
    owner.gate.set()
    async with asyncio.timeout(5):
        await link.idle()
    assert owner.ran == [str(i) for i in range(count)]
    assert transport.reading


async def test_a_quiet_peer_is_pinged_and_one_that_never_answers_is_cut() -> None:
    """Guards against a dead peer kept for ever, and against a live one (that answers
    the ping with anything) being cut."""
    owner = Owner()
    link, transport = make_link(owner, heartbeat=0.05)
    async with asyncio.timeout(5):
        await transport.wrote.wait()  # once quiet for a period: the ping
    assert bytes(transport.written) == b"\x89\x00"
    assert not transport.cut.is_set()
    link.data_received(b"\x8a\x80" + os.urandom(4))  # its pong
    transport.written.clear()
    transport.wrote.clear()
    async with asyncio.timeout(5):
        await transport.wrote.wait()  # quiet again: pinged again
        assert not transport.cut.is_set()  # the pong kept it
        await transport.cut.wait()  # no answer this time: cut
    assert bytes(transport.written) == b"\x89\x00"
    assert link.broken is not None and "PONG" in link.broken
