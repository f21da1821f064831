"""A bounded fuzz run against a live gateway node (issue 6, hardening).

Starts a real `python -m gateway` (tooling/gateway.py), keeps two honest users chatting
on it (one JSON, one text), and meanwhile throws at it, from one seeded generator:
random bytes as binary frames, random and broken text frames, invalid UTF-8 written at
the frame level, JSON nested tens of thousands deep, huge numbers, wrong types for every
field of every frame type, unknown types, bad refs, oversize frames, broken WebSocket
framing, thousands of joins to distinct rooms, thousands of short connections, slow
readers and handshakes dropped half way. Then it closes everything, waits (bounded) for
the node to let go of it all, and prints the figures.

    .venv/bin/python -m bench.fuzz                       # the in-process broker
    .venv/bin/python -m bench.fuzz --redis-url redis://127.0.0.1:6390/0 --seed 7

Exits 1 when the node crashed, /healthz failed, an honest message was lost, a connection
ended in a way the protocol does not have (1011, a drop without a close frame, ...), or
rooms or connections were left behind. tests/test_fuzz.py runs a smaller `run_fuzz`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from gateway.controls import NOT_IN_TEXT
from tooling.gateway import GatewayProcess

JSON_PROTOCOL = "chat.v1.json"
MAX_FRAME_BYTES = 64 * 1024  # the node's default --max-frame-bytes
MAX_ROOMS = 50  # the node's default --max-rooms-per-connection
MAX_CHARS = 4000  # the node's default --max-message-chars
HONEST_ROOM = "lobby"
STEP = 10.0  # the most one network step (connect, an answer, a close) may take, in seconds
CHURN_TRIES = 5  # handshakes a churn connection tries while refused with 429
FUZZ_API_KEY = "fuzz-operator-key"  # the fuzzed node's, so that REST bodies are read
MIB = 1024 * 1024

# Close codes the protocol (or RFC 6455 for broken framing) gives a misbehaving client.
PROTOCOL_ERROR, INVALID_TEXT, POLICY, TOO_BIG = 1002, 1007, 1008, 1009
Outcome = str  # how one connection ended: "close 1008", "closed by us", "http 400", ...


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FuzzConfig:
    """How much to throw. Every count is a bound; `time_cap` bounds the whole fuzz phase."""

    seed: int = 1
    redis_url: str | None = None
    fuzzers: int = 6  # protocol fuzzers per mode (JSON and text), running at once
    frames_per_fuzzer: int = 800  # frames each one sends (reconnecting after a close)
    handshakes: int = 300  # connections with random query parameters / text-mode names
    raw_rounds: int = 6  # rounds of every hand-made frame-level and handshake case
    room_floods: int = 30  # JSON connections filling their 50 rooms at the same time
    joins_per_flood: int = 200  # distinct rooms each of them tries to join
    text_room_walks: int = 2  # text connections walking through distinct rooms with /join
    rooms_per_walk: int = 1000
    churn: int = 3000  # connections that each join a new room, then close or drop
    churn_parallel: int = 40
    slow_readers: int = 2  # per mode: connections that ask for a lot and never read
    # Inputs that found bugs not fixed yet (see tests/test_fuzz.py); off, the run skips them.
    huge_offsets: bool = True  # offsets in the node's own epoch with thousands of digits
    non_ascii_sessions: bool = True  # ?session= with non-ASCII characters, for a taken name
    honest_interval: float = 0.15  # seconds between two messages of an honest user
    rounds: int = 3  # the whole fuzz again on the same node: a leak grows with each round
    time_cap: float = 300.0
    settle_cap: float = 20.0  # the most the node may take to let go of everything, each time
    # Then RSS again this much later: aiohttp 3.14 re-arms the heartbeat of a WebSocket the
    # node closed when the peer's close reply comes in, which holds the connection's objects
    # for one heartbeat and a pong wait (30 + 15 s by default). 0: no second look.
    linger: float = 50.0


@dataclass
class FuzzReport:
    """The figures of one run."""

    config: FuzzConfig
    frames: int = 0
    connections: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)  # connections that ended wrongly
    anomaly_count: int = 0
    room_flood_subscribed: list[int] = field(default_factory=list)  # rooms each flood got
    rooms_at_peak: int = 0  # rooms /api/rooms listed while the floods held theirs
    slow_consumers_closed: int = 0
    honest_sent: int = 0
    honest_received: int = 0
    honest_lost: int = 0
    honest_duplicated: int = 0
    healthz_checks: int = 0
    healthz_failures: int = 0
    node_exited: bool = False
    healthz_after: int | None = None
    rss_start: int = 0  # bytes: the node just started
    rss_before: int = 0  # bytes: the honest users connected, before any fuzzing
    rss_peak: int = 0  # VmHWM
    rss_rounds: list[int] = field(default_factory=list)  # bytes: settled after each round
    rss_after: int = 0  # bytes: every connection closed and the node settled
    rss_later: int = 0  # bytes: `linger` seconds after that
    settled: bool = False
    connections_left: float = -1.0
    rooms_left: list[str] = field(default_factory=list)
    node_tracebacks: list[str] = field(default_factory=list)  # every one in the log
    node_failures: list[str] = field(default_factory=list)  # those not caused by the client
    node_warnings: Counter[str] = field(default_factory=Counter)  # its WARNING+ lines, grouped
    honest_missing: list[str] = field(default_factory=list)  # the lost messages (a few)
    honest_refused: list[str] = field(default_factory=list)  # error answers they were given
    time_capped: bool = False
    seconds: float = 0.0

    @property
    def crashes(self) -> int:
        return int(self.node_exited) + self.healthz_failures

    @property
    def ok(self) -> bool:
        return (
            self.crashes == 0
            and self.healthz_after == 200
            and self.honest_lost == 0
            and not self.honest_refused
            and self.anomaly_count == 0
            and not self.node_failures
            and self.settled
            and not self.time_capped
        )

    def anomaly(self, text: str) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < 30:
            self.anomalies.append(text)


ENDING = {"oversize frame", "quit"}  # inputs after which the node closes the connection


@dataclass(frozen=True)
class Probe:
    """One fuzz input; `bad` is True when the protocol must refuse it, None if it may not."""

    data: str | bytes
    kind: str
    bad: bool | None = True


# --------------------------------------------------------------------------- the node


FuzzedNode = GatewayProcess  # the node under fuzz: its pid, memory and failures


# --------------------------------------------------------------------------- raw frames


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True,
    length: int | None = None,
) -> bytes:  # fmt: skip
    """A client frame written by hand; `length` claims a length other than the payload's."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    stream = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        len(payload), "big"
    )
    return bytes(head) + key + masked


class RawSocket:
    """A WebSocket client written by hand, for what aiohttp's client will not send:
    invalid UTF-8, broken framing, handshakes dropped half way, reads that never come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.texts: list[str] = []  # text frames received

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> RawSocket:
        sock = socket.socket()
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            async with asyncio.timeout(STEP):
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
                reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    @staticmethod
    def request(query: str, *, json_mode: bool, headers: str | None = None) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = headers if headers is not None else (
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            + (f"Sec-WebSocket-Protocol: {JSON_PROTOCOL}\r\n" if json_mode else "")
        )  # fmt: skip
        return f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode()

    async def upgrade(self, query: str, *, json_mode: bool) -> int:
        """Send the handshake; the HTTP status of the answer."""
        self.writer.write(self.request(query, json_mode=json_mode))
        return await self.status()

    async def status(self) -> int:
        async with asyncio.timeout(STEP):
            head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1])

    def send(self, opcode: int, payload: bytes, **options: Any) -> None:
        self.writer.write(encode_frame(opcode, payload, **options))

    async def frame(self) -> tuple[int, bytes]:
        """The server's next frame (servers neither mask nor, here, fragment)."""
        first, second = await self.reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0xF, await self.reader.readexactly(n)

    async def until(self, match: Callable[[str], bool]) -> bool:
        """Read text frames until one matches; False if the connection ended first, or
        after STEP seconds."""
        try:
            async with asyncio.timeout(STEP):
                while True:
                    opcode, payload = await self.frame()
                    if opcode == 0x8:
                        return False
                    if opcode == 0x1:
                        text = payload.decode(errors="replace")
                        self.texts.append(text)
                        if match(text):
                            return True
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False

    async def ending(self, within: float = STEP) -> Outcome:
        """Read until the server ends the connection: its close code, "eof" (closed
        without a close frame), "reset", or "no answer" after `within` seconds."""
        try:
            async with asyncio.timeout(within):
                while True:
                    opcode, payload = await self.frame()
                    if opcode == 0x1:
                        self.texts.append(payload.decode(errors="replace"))
                    elif opcode == 0x8:
                        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                        return f"close {code}"
        except TimeoutError:
            return "no answer"
        except asyncio.IncompleteReadError:
            return "eof"
        except ConnectionError:
            return "reset"

    def abort(self) -> None:
        """Drop the connection with a TCP reset, as a crashed client or a cut cable does."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STEP):
                await self.writer.wait_closed()


# --------------------------------------------------------------------------- inputs


ARABIC_3, ARABIC_10, WIDE_10 = "\u0663", "\u0661\u0660", "\uff11\uff10"  # decimal digits too
# Names no node may accept: they render as another name, as nothing, or as the start of
# a system, error or direct-message line (invisible, blank, a mark on nothing, a prefix).
HOSTILE_NAMES = ("ali\u034fce", "alice\u3164", "\u3164", "\u2800", "\u0301x", "[dm] admin",
                 "! server", "* x", "\uff3bdm\uff3d x", "bob\ufe0f")  # fmt: skip


def deep(depth: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def huge_int(digits: int) -> str:
    return "9" * digits


def random_text(rng: random.Random, longest: int = 120) -> str:
    """Random printable-ish Unicode (never a lone surrogate: those are not UTF-8)."""
    pools = [
        (0x20, 0x7E), (0xA0, 0x2FF), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF),
        (0x1F300, 0x1F6FF), (0x0, 0x1F), (0x200B, 0x200F), (0xFFF0, 0xFFFF), (0x80, 0x9F),
        (0x2028, 0x2029),
    ]  # fmt: skip
    out = []
    for _ in range(rng.randint(0, longest)):
        low, high = rng.choice(pools)
        out.append(chr(rng.randint(low, high)))
    return "".join(out)


# Characters message text may not hold: C0 (CR, VT, FF, the separators 0x1C-0x1E), ESC,
# DEL, C1 (NEL 0x85, CSI 0x9B) and the Unicode line and paragraph separators.
CONTROL_CODES = [0, 1, 7, 8, 11, 12, 13, 27, 28, 30, 127, 0x80, 0x85, 0x9B, 0x9F, 0x2028, 0x2029]

# Raw JSON text for a field value: wrong types, huge numbers, bad strings, deep nesting.
WRONG_VALUES = [
    "null", "true", "false", "0", "-1", "1.5", "1e400", "-1e400", "NaN", "Infinity",
    "-Infinity", huge_int(5000), "-" + huge_int(4000), "1" + "0" * 400 + ".5", '""', '" "',
    '"\\u0000"', '"\\ud800"', '"a\\udfffb"', json.dumps("x" * 65), json.dumps("y" * 5000),
    "[]", "{}", "[1,2,3]", '{"type":"send"}', deep(900), deep(20000), deep(5000, "object"),
    '"\\u202e\\u200b"', '"lobby\\n"', '"../../etc"',
]  # fmt: skip

# Each client frame type and a valid value (raw JSON) for each of its fields.
FRAME_FIELDS: dict[str, dict[str, str]] = {
    "send": {"room": '"lobby"', "text": '"hello"', "id": '"m1"'},
    "join": {"room": '"fz-x"', "since": "null"},
    "leave": {"room": '"fz-x"'},
    "who": {"room": '"lobby"'},
    "rooms": {},
    "history": {"room": '"lobby"', "before": "null", "limit": "10"},
    "dm": {"to": '"honest-j"', "text": '"psst"'},
    "kick": {"room": '"lobby"', "name": '"honest-j"', "seconds": "60"},
    "delete": {"room": '"lobby"', "offset": '"x-1"'},
    "ping": {},
}


def raw_object(pairs: dict[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs.items()) + "}"


class Inputs:
    """The seeded generator of fuzz frames for both modes."""

    def __init__(self, rng: random.Random, offsets: set[str], huge_offsets: bool) -> None:
        self.rng = rng
        self.offsets = offsets  # offsets the fuzzers have seen: their epochs are real
        self.huge_offsets = huge_offsets

    def room(self) -> str:
        return self.rng.choice(["lobby", f"fz-{self.rng.randint(0, 40)}", "fz-x"])

    # JSON mode ------------------------------------------------------------------

    def json_frame(self) -> Probe:
        makers: list[tuple[Callable[[], Probe], int]] = [
            (self._valid, 12), (self._wrong_type, 30), (self._missing_field, 6),
            (self._unknown_type, 5), (self._bad_ref, 6), (self._not_an_object, 5),
            (self._not_json, 8), (self._deep, 4), (self._huge_number, 6), (self._offset, 6),
            (self._binary, 5), (self._control_text, 3), (self._at_limit, 1), (self._oversize, 1),
        ]  # fmt: skip
        make = self.rng.choices([m for m, _ in makers], [w for _, w in makers])[0]
        return make()

    def _valid(self) -> Probe:
        kind = self.rng.choice(list(FRAME_FIELDS))
        pairs = {"type": json.dumps(kind), **FRAME_FIELDS[kind]}
        if "room" in pairs:
            pairs["room"] = json.dumps(self.room())
        if "text" in pairs:
            pairs["text"] = json.dumps(random_text(self.rng, 200) or "x")
        if kind == "send":
            pairs["id"] = json.dumps(f"fz{self.rng.randint(0, 10**6)}")
        pairs["ref"] = json.dumps(f"v{self.rng.randint(0, 999)}")
        return Probe(raw_object(pairs), f"valid {kind}", None)

    def _wrong_type(self) -> Probe:
        kind = self.rng.choice(list(FRAME_FIELDS))
        pairs = {"type": json.dumps(kind), **FRAME_FIELDS[kind], "ref": '"w"'}
        key = self.rng.choice(list(pairs))
        pairs[key] = self.rng.choice(WRONG_VALUES)
        return Probe(raw_object(pairs), f"wrong {kind}.{key}", None)

    def _missing_field(self) -> Probe:
        kind = self.rng.choice(["send", "join", "leave", "who", "history", "dm", "kick", "delete"])
        pairs = {"type": json.dumps(kind), **FRAME_FIELDS[kind]}
        required = [k for k, v in pairs.items() if k != "type" and v != "null" and k != "id"]
        required = [k for k in required if not (kind == "history" and k == "limit")]
        required = [k for k in required if not (kind == "kick" and k == "seconds")]
        del pairs[self.rng.choice(required)]
        return Probe(raw_object(pairs), f"missing field of {kind}")

    def _unknown_type(self) -> Probe:
        value = self.rng.choice(
            [json.dumps(random_text(self.rng, 20)), '"SEND"', '"send "', "1", "null", "[]",
             '"__proto__"', '"constructor"', huge_int(300)]
        )  # fmt: skip
        pairs = {"room": '"lobby"', "text": '"x"'}
        if self.rng.random() < 0.8:
            pairs["type"] = value
        return Probe(raw_object(pairs), "unknown type")

    def _bad_ref(self) -> Probe:
        value = self.rng.choice(
            [json.dumps("r" * 65), json.dumps("r" * 10000), "1", "1e400", "[]", "{}", "true",
             '"\\ud800"', huge_int(5000), deep(3000)]
        )  # fmt: skip
        return Probe(raw_object({"type": '"ping"', "ref": value}), "bad ref")

    def _not_an_object(self) -> Probe:
        data = self.rng.choice(
            ["[]", "null", "1", '"send"', "true", '[{"type":"ping"}]', huge_int(200), "1e400"]
        )
        return Probe(data, "not an object")

    def _not_json(self) -> Probe:
        choices = [
            random_text(self.rng),
            '{"type":"ping"',
            '{"type":"ping"} trailing',
            "{'type':'ping'}",
            '{"type":"ping",}',
            "\ufeff" + '{"type":"ping"}',
            "",
            " ",
        ]
        data = self.rng.choice(choices)
        if data.strip().startswith(("{", "[")) or data.strip() == "":
            return Probe(data, "not JSON")
        with contextlib.suppress(ValueError):
            if isinstance(json.loads(data), dict):  # random text that happens to be an object
                return Probe(data, "not JSON", None)
        return Probe(data, "not JSON")

    def _deep(self) -> Probe:
        depth = self.rng.choice([1000, 5000, 20000, 32000])
        shape = self.rng.choice(["bare list", "bare object", "in text", "in ref"])
        if shape == "bare list":
            data = deep(depth)
        elif shape == "bare object":
            data = deep(min(depth, 10000), "object")
        elif shape == "in text":
            data = raw_object({"type": '"send"', "room": '"lobby"', "text": deep(depth)})
        else:
            data = raw_object({"type": '"ping"', "ref": deep(depth)})
        return Probe(data, f"nested {depth} deep ({shape})")

    def _huge_number(self) -> Probe:
        number = self.rng.choice(
            ["1e400", "-1e400", huge_int(5000), huge_int(4300), "-" + huge_int(4301),
             "1" + "0" * 310, "0." + "0" * 5000 + "1", "1e-400", "NaN"]
        )  # fmt: skip
        kind = self.rng.choice(["history.limit", "type", "ref", "send.room", "join.since"])
        if kind == "history.limit":
            data = raw_object({"type": '"history"', "room": '"lobby"', "limit": number})
        elif kind == "type":
            data = raw_object({"type": number})
        elif kind == "ref":
            data = raw_object({"type": '"ping"', "ref": number})
        elif kind == "send.room":
            data = raw_object({"type": '"send"', "room": number, "text": '"x"'})
        else:
            data = raw_object({"type": '"join"', "room": '"fz-n"', "since": number})
        return Probe(data, f"huge number in {kind}")

    def offset(self) -> str:
        """A broken offset, often in an epoch the node really uses (seen in its answers)."""
        epochs = sorted({o.rpartition("-")[0] for o in self.offsets} | {"nope"})
        epoch = self.rng.choice(epochs)
        seqs = ["0", "-1", "", "1.5", ARABIC_3, WIDE_10, huge_int(30), "9" * 64, "00001", "x"]
        if self.huge_offsets:
            seqs += [huge_int(4301), huge_int(5000)]
        return f"{epoch}-{self.rng.choice(seqs)}"

    def _offset(self) -> Probe:
        offset = self.offset()
        if self.rng.random() < 0.5:
            frame = {"type": "history", "room": "lobby", "before": offset, "ref": "o"}
        else:
            frame = {"type": "join", "room": f"fz-o{self.rng.randint(0, 9)}", "since": offset}
        return Probe(json.dumps(frame), f"offset {offset[:40]}", None)

    def _binary(self) -> Probe:
        return Probe(self.rng.randbytes(self.rng.randint(0, 300)), "binary")

    def _control_text(self) -> Probe:
        text = "a" + chr(self.rng.choice(CONTROL_CODES)) + "b"
        return Probe(json.dumps({"type": "send", "room": "lobby", "text": text}), "control char")

    def _at_limit(self) -> Probe:
        """A frame of exactly the largest size accepted: refused as a message, not closed."""
        head = '{"type":"send","room":"lobby","text":"'
        return Probe(head + "z" * (MAX_FRAME_BYTES - len(head) - 2) + '"}', "frame at the limit")

    def _oversize(self) -> Probe:
        return Probe("{" + " " * MAX_FRAME_BYTES + "}", "oversize frame")

    # text mode ------------------------------------------------------------------

    def text_line(self) -> Probe:
        makers: list[tuple[Callable[[], Probe], int]] = [
            (self._chat_line, 10), (self._unknown_command, 8), (self._command, 30),
            (self._control_line, 4), (self._long_line, 3), (self._binary, 5),
            (self._blank_line, 2), (self._text_oversize, 1), (self._quit, 1),
        ]  # fmt: skip
        make = self.rng.choices([m for m, _ in makers], [w for _, w in makers])[0]
        return make()

    def _chat_line(self) -> Probe:
        return Probe(random_text(self.rng, 200) or "x", "chat line", None)

    def _unknown_command(self) -> Probe:
        return Probe(f"/zz{random_text(self.rng, 20)}", "unknown command")

    def _command(self) -> Probe:
        number = self.rng.choice(
            ["0", "101", "-1", "1.5", huge_int(50), huge_int(4301), huge_int(5000), ARABIC_10,
             WIDE_10, "1e3", "abc", "", " 5 ", "100", "0" * 5000 + "1"]
        )  # fmt: skip
        line = self.rng.choice(
            [f"/history {number}", f"/join {random_text(self.rng, 70)}", f"/join {self.room()}",
             "/join", "/join a b", f"/msg {random_text(self.rng, 40)}", '/msg "unclosed hi',
             '/msg "" hi', "/msg honest-j hello", "/msg nobody-here hi", "/who extra", "/who",
             "/rooms x", "/rooms", "/help me", "/help", "/HISTORY 3", "//" + random_text(self.rng),
             "/kick", "/kick honest-j", f"/kick honest-j {number}", '/kick "unclosed 5']
        )  # fmt: skip
        return Probe(line, f"command {line[:20]}", None)

    def _control_line(self) -> Probe:
        char = chr(self.rng.choice(CONTROL_CODES))
        return Probe(f"a{char}b", "control char")

    def _long_line(self) -> Probe:
        return Probe("w" * self.rng.randint(MAX_CHARS + 1, 3 * MAX_CHARS), "too long")

    def _blank_line(self) -> Probe:
        return Probe(self.rng.choice(["", " ", "\t", "\r\n", "\n\n"]), "blank", False)

    def _text_oversize(self) -> Probe:
        return Probe("[" * (MAX_FRAME_BYTES + 1), "oversize frame")

    def _quit(self) -> Probe:
        return Probe("/quit", "quit", False)


# --------------------------------------------------------------------------- connections


class Fuzzed:
    """One fuzzing connection through aiohttp's client: what it sent, what it was
    answered, and how it ended."""

    _ids = itertools.count(1)

    def __init__(self, run: FuzzRun, ws: aiohttp.ClientWebSocketResponse, mode: str) -> None:
        self.run = run
        self.ws = ws
        self.mode = mode
        self.frames: list[Any] = []  # the first KEEP decoded JSON objects or text lines
        self.counts: Counter[str] = Counter()  # frames by type ("subscribed+ref", "you are in")
        self.refs: set[str] = set()  # the refs of the answers received
        self.answered = False  # the end marker was answered: every input before it was
        self.errors = 0
        self.bad_sent = False
        self.quit_sent = False
        self.stalled = False
        self.last: list[str] = []  # the last inputs, for the anomaly report
        self.marker = f"fuzzend{next(self._ids)}"
        self.close_code: int | None = None  # the code of the node's close frame
        self.closing = False  # we started the closing handshake: its reply is ours
        self.ending = ""  # the last thing the reader saw when it was not a text frame
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    KEEP = 200

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type is WSMsgType.TEXT:
                    self._take(str(msg.data))
                elif msg.type is WSMsgType.CLOSE:
                    if not self.closing:
                        self.close_code = int(msg.data)
                    return
                elif msg.type is not WSMsgType.BINARY:
                    self.ending = f"{msg.type.name} {msg.data!r}"
                    return  # CLOSING, CLOSED or ERROR: the connection ended
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as error:
            self.ending = repr(error)
            return
        finally:
            self.closed.set()
            self._arrived.set()

    def _take(self, data: str) -> None:
        report = self.run.report
        if self.mode == "json":
            frame = json.loads(data)
            if not isinstance(frame, dict):
                report.anomaly(f"the node sent a JSON frame that is not an object: {data[:80]}")
                return
            if frame.get("type") == "error":
                self.errors += 1
                report.error_codes[frame.get("code", "?")] += 1
            offset = frame.get("offset")
            if isinstance(offset, str) and len(self.run.offsets) < 100:
                self.run.offsets.add(offset)
            ref = frame.get("ref")
            if isinstance(ref, str):
                self.refs.add(ref)
            self.answered = self.answered or ref == self.marker
            self.counts[f"{frame.get('type')}{'+ref' if ref else ''}"] += 1
        else:
            frame = data
            if NOT_IN_TEXT.search(data):  # a terminal would run it, or split the line there
                report.anomaly(f"a text-mode line holds a control character: {data[:80]!r}")
            if data.startswith("! "):
                self.errors += 1
                report.error_codes["text-mode ! line"] += 1
            self.answered = self.answered or data.startswith(f"! unknown command /{self.marker}")
            if data.startswith("* you are in "):
                self.counts["you are in"] += 1
        if len(self.frames) < self.KEEP:
            self.frames.append(frame)
        self._arrived.set()

    async def wait_for(self, done: Callable[[], bool], within: float = STEP) -> bool:
        """True once `done()`, checked as frames arrive; False if the connection ended or
        time ran out first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    if done():
                        return True
                    if self.closed.is_set():
                        return False
                    self._arrived.clear()
                    await self._arrived.wait()
        return False

    def entered(self) -> bool:
        """True once the node put this connection in a room (subscribed / "you are in")."""
        return self.counts["subscribed"] > 0 or self.counts["you are in"] > 0

    async def send(self, probe: Probe) -> bool:
        """Send one input; False once the connection is gone."""
        if self.closed.is_set():
            return False
        self.run.report.frames += 1
        self.bad_sent = self.bad_sent or probe.bad is True
        self.quit_sent = self.quit_sent or probe.kind == "quit"
        self.last = [*self.last[-4:], f"{probe.kind}: {probe.data[:60]!r}"]
        try:
            async with asyncio.timeout(STEP):
                if isinstance(probe.data, bytes):
                    await self.ws.send_bytes(probe.data)
                else:
                    await self.ws.send_str(probe.data)
        except TimeoutError:
            self.stalled = True  # the node stopped reading this connection for STEP seconds
            return False
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            return False
        return True

    async def finish(self, label: str, allowed: set[Outcome], *, answer_needed: bool) -> Outcome:
        """Make sure every input was answered, close, and judge how the connection ended."""
        if not self.closed.is_set():
            end = (
                json.dumps({"type": "ping", "ref": self.marker})
                if self.mode == "json"
                else f"/{self.marker}"
            )
            if await self.send(Probe(end, "end marker", False)):
                await self.wait_for(lambda: self.answered, 3 * STEP)
        answered = self.answered
        if not self.closed.is_set():
            self.closing = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STEP):
                    await self.ws.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STEP):
                await self._reader
        if not self._reader.done():
            self._reader.cancel()
        if self.close_code is not None:
            outcome = f"close {self.close_code}"
        elif answered:
            outcome = "closed by us"
        elif self.stalled:
            outcome = "stalled"
        else:
            outcome = "no answer" if not self.ws.closed else "dropped"
            self.last.append(f"then {self.ending or 'nothing'}")
        report = self.run.report
        report.outcomes[outcome] += 1
        if outcome not in allowed:
            report.anomaly(f"{label}: {outcome}; last inputs {self.last}")
        elif answer_needed and self.bad_sent and not self.errors and self.close_code is None:
            report.anomaly(f"{label}: bad input and no error answer; last inputs {self.last}")
        return outcome


# --------------------------------------------------------------------------- the run


class FuzzRun:
    """One fuzz run against one node: the scenarios, the honest users, the figures."""

    def __init__(
        self, config: FuzzConfig, node: FuzzedNode, http: aiohttp.ClientSession, report: FuzzReport
    ) -> None:
        self.config = config
        self.node = node
        self.http = http
        self.report = report
        self.offsets: set[str] = set()
        self.base = f"http://127.0.0.1:{node.port}"
        self.round = 0

    # observing the node ---------------------------------------------------------

    async def get(self, path: str) -> tuple[int, str]:
        async with asyncio.timeout(STEP), self.http.get(self.base + path) as response:
            return response.status, await response.text()

    async def metric(self, name: str) -> float:
        """The sum of a metric's samples on /metrics."""
        _, body = await self.get("/metrics")
        values = [
            float(line.rpartition(" ")[2])
            for line in body.splitlines()
            if line.startswith((name + "{", name + " "))
        ]
        return sum(values)

    async def rooms(self) -> tuple[list[str], int]:
        """The rooms /api/rooms lists (the busiest 100 at most), and how many there are."""
        _, body = await self.get("/api/rooms")
        listing = json.loads(body)
        return [entry["room"] for entry in listing["rooms"]], int(listing["total"])

    async def watch_health(self) -> None:
        """Poll /healthz every half second for as long as the fuzz runs."""
        while True:
            self.report.healthz_checks += 1
            try:
                status, _ = await self.get("/healthz")
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                status = 0
            if status != 200 or not self.node.alive():
                self.report.healthz_failures += 1
            await asyncio.sleep(0.5)

    async def settle(self, connections: int = 0, rooms: tuple[str, ...] = ()) -> bool:
        """Poll (bounded) until only `connections` are open and only `rooms` are left."""
        deadline = time.monotonic() + self.config.settle_cap
        while True:
            try:
                self.report.connections_left = await self.metric("chat_connections")
                self.report.rooms_left = (await self.rooms())[0]
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError, KeyError):
                self.report.rooms_left = ["? /api/rooms did not answer"]
            if self.report.connections_left == connections and self.report.rooms_left == [*rooms]:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.25)  # under the REST read rate (5/s) of one address

    # opening connections --------------------------------------------------------

    async def open(self, mode: str, params: dict[str, str], label: str) -> Fuzzed | None:
        """A fuzzing connection through aiohttp; None if the handshake was refused."""
        self.report.connections += 1
        protocols = (JSON_PROTOCOL,) if mode == "json" else ()
        try:
            async with asyncio.timeout(STEP):
                ws = await self.http.ws_connect(
                    self.node.url, params=params, protocols=protocols, max_msg_size=0
                )
        except aiohttp.WSServerHandshakeError as error:
            outcome = f"http {error.status}"
            self.report.outcomes[outcome] += 1
            if error.status != 429:  # over --max-connections-per-ip is a protocol answer
                self.report.anomaly(f"{label}: handshake refused with {error.status}")
            return None
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
            self.report.outcomes["could not connect"] += 1
            self.report.anomaly(f"{label}: could not connect: {error!r}")
            return None
        return Fuzzed(self, ws, mode)

    async def raw(self, query: str, *, json_mode: bool, **options: Any) -> RawSocket | None:
        """A hand-written WebSocket, upgraded; None (and an anomaly) if that failed."""
        self.report.connections += 1
        sock = await RawSocket.connect(self.node.port, **options)
        status = await sock.upgrade(query, json_mode=json_mode)
        if status != 101:
            self.report.outcomes[f"http {status}"] += 1
            if status != 429:
                self.report.anomaly(f"raw upgrade {query[:60]}: HTTP {status}")
            await sock.close()
            return None
        return sock

    def judge(self, label: str, outcome: Outcome, allowed: set[Outcome], detail: str = "") -> None:
        self.report.outcomes[outcome] += 1
        if outcome not in allowed:
            self.report.anomaly(f"{label}: {outcome}, expected one of {sorted(allowed)} {detail}")

    async def guarded(self, label: str, work: Awaitable[None]) -> None:
        """Run one scenario worker; a harness failure is reported, not raised."""
        try:
            await work
        except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError, ValueError) as error:
            self.report.anomaly(f"{label}: {error!r}")

    # scenarios ------------------------------------------------------------------

    async def protocol_fuzzer(self, mode: str, index: int) -> None:
        """Random frames of every kind, reconnecting whenever the node closes us."""
        rng = random.Random(f"{self.config.seed}/{self.round}/{mode}/{index}")
        inputs = Inputs(rng, self.offsets, self.config.huge_offsets)
        budget = self.config.frames_per_fuzzer
        for generation in itertools.count():
            if budget <= 0:
                return
            room = HONEST_ROOM if index % 2 == 0 else f"fz-{mode}{index}"
            label = f"{mode} fuzzer {index}.{generation}"
            conn = await self.open(mode, {"name": f"fz-{mode}{index}-{generation}", "room": room},
                                   label)  # fmt: skip
            if conn is None:
                budget -= 1
                continue
            await conn.wait_for(conn.entered)  # a refusal is judged in finish()
            while budget > 0:
                probe = inputs.json_frame() if mode == "json" else inputs.text_line()
                budget -= 1
                if not await conn.send(probe) or conn.closed.is_set():
                    break
                if probe.kind in ENDING:  # the node closes: wait for it, send nothing more
                    await conn.wait_for(lambda: False)
                    break
            allowed = {"closed by us", f"close {POLICY}", f"close {TOO_BIG}"}
            if conn.quit_sent:
                allowed.add("close 1000")
            await conn.finish(label, allowed, answer_needed=True)

    async def handshake_fuzzer(self, index: int) -> None:
        """Random query parameters, and random names typed at text mode's question."""
        rng = random.Random(f"{self.config.seed}/{self.round}/handshake/{index}")
        json_mode = rng.random() < 0.5
        mine = f"fz-h{index}"
        params: dict[str, str] = {}
        names = [mine, mine, random_text(rng, 40), "", " ", "n" * 33, "honest-j", "HONEST-J",
                 "h\u043enest-j", "a\x00b", "\u200b", "\ufeffbob", "x\u202ey",
                 *HOSTILE_NAMES]  # fmt: skip
        rooms = [f"fz-h{index}", "lobby", "", "a b", "r" * 65, "../x", random_text(rng, 10)]
        if rng.random() < 0.9:
            params["name"] = rng.choice(names)
        if rng.random() < 0.7:
            params["room"] = rng.choice(rooms)
        if rng.random() < 0.4:
            inputs = Inputs(rng, self.offsets, self.config.huge_offsets)
            params["since"] = inputs.offset()
        if rng.random() < 0.2:
            session = random_text(rng, 30)
            if not self.config.non_ascii_sessions:
                session = session.encode("ascii", "replace").decode()
            params["session"] = session
        label = f"handshake {'json' if json_mode else 'text'} {params!r}"[:300]
        conn = await self.open("json" if json_mode else "text", params, label)
        if conn is None:
            return
        if json_mode:
            subscribed = await conn.wait_for(conn.entered)
            allowed = {f"close {POLICY}"} if not subscribed else {"closed by us"}
            if subscribed and params.get("name") in HOSTILE_NAMES:
                self.report.anomaly(f"{label}: a name no node may accept was welcomed")
        else:
            for _ in range(rng.randint(0, 3)):
                await conn.send(Probe(rng.choice(names[2:]), "typed name", None))
            await conn.send(Probe(mine, "typed name", False))
            await conn.wait_for(conn.entered)
            allowed = {"closed by us", f"close {POLICY}"}
        outcome = await conn.finish(label, allowed, answer_needed=False)
        if outcome == f"close {POLICY}" and conn.errors == 0:
            self.report.anomaly(f"{label}: refused without an error answer")

    async def raw_cases(self, round_index: int) -> None:
        """Every hand-made frame-level and handshake case, once, in a seeded order."""
        rng = random.Random(f"{self.config.seed}/{self.round}/raw/{round_index}")
        cases = list(RAW_CASES)
        rng.shuffle(cases)
        for name, case, allowed in cases:
            label = f"raw {name} (round {round_index})"
            try:
                async with asyncio.timeout(3 * STEP):
                    outcome, detail = await case(self, rng)
            except TimeoutError:
                outcome, detail = "harness timeout", ""
            self.judge(label, outcome, allowed, detail)

    async def slow_reader(self, mode: str, index: int) -> None:
        """Fill a room with long messages, ask for its history again and again, never read:
        the node must close this connection (1008, too slow) and nobody else must notice."""
        room = f"slow-{mode}{index}"
        query = f"name=fz-slow-{mode}{index}&room={room}"
        sock = await self.raw(query, json_mode=mode == "json", rcvbuf=4096)
        if sock is None:
            return
        try:
            before = await self.metric("chat_slow_consumers_closed_total")
            for i in range(20):  # the rate limit's burst
                text = "s" * (MAX_CHARS - 3) + f"{i:03}"
                if mode == "json":
                    text = json.dumps({"type": "send", "room": room, "text": text})
                sock.send(0x1, text.encode())
            # 20: the room holds no more, and a request costs the history budget the
            # limit it asks for (--history-burst 1000: 50 answers of 80 KB at once).
            ask = json.dumps({"type": "history", "room": room, "limit": 20})
            ask = ask if mode == "json" else "/history 20"
            for _ in range(100):
                sock.send(0x1, ask.encode())
            self.report.frames += 120
            closed = False
            deadline = time.monotonic() + 3 * STEP
            while time.monotonic() < deadline:  # a bounded poll of the node's own counter
                if await self.metric("chat_slow_consumers_closed_total") > before:
                    closed = True
                    break
                await asyncio.sleep(0.1)
            outcome = await sock.ending(STEP) if closed else "not closed"
            # The close frame waits behind the unread data, so it comes if we read in
            # time; otherwise the node cuts the connection (CLOSE_TIMEOUT) and we see that.
            self.judge(f"slow reader {mode}{index}", outcome,
                       {f"close {POLICY}", "eof", "reset"})  # fmt: skip
        finally:
            await sock.close()

    async def room_flood(self, index: int, all_full: asyncio.Event, full: list[int]) -> None:
        """Join `joins_per_flood` distinct rooms: 50 are granted, the rest refused; hold
        them until every flood holds its own, then close."""
        label = f"room flood {index}"
        conn = await self.open("json", {"name": f"fz-f{index}", "room": f"fr{index}-0"}, label)
        if conn is None:
            return
        await conn.wait_for(conn.entered)
        joins = self.config.joins_per_flood
        for k in range(1, joins + 1):
            frame = json.dumps({"type": "join", "room": f"fr{index}-{k}", "ref": f"j{k}"})
            if not await conn.send(Probe(frame, "join", None)):
                break
        await conn.send(Probe(json.dumps({"type": "ping", "ref": "flooded"}), "ping", False))
        await conn.wait_for(lambda: "flooded" in conn.refs, 3 * STEP)
        granted, refused = conn.counts["subscribed+ref"], conn.counts["error+ref"]
        self.report.room_flood_subscribed.append(granted)
        expected = min(joins, MAX_ROOMS - 1)
        if granted != expected or refused != joins - expected:
            self.report.anomaly(
                f"{label}: {granted} joins granted and {refused} refused of {joins}; "
                f"expected {expected} granted (at most {MAX_ROOMS} rooms per connection)"
            )
        full.append(index)
        if len(full) == self.config.room_floods:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                self.report.rooms_at_peak = (await self.rooms())[1]
            all_full.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3 * STEP):
                await all_full.wait()
        await conn.finish(label, {"closed by us"}, answer_needed=False)

    async def room_walk(self, index: int) -> None:
        """Text mode walks through thousands of distinct rooms with /join."""
        label = f"room walk {index}"
        conn = await self.open("text", {"name": f"fz-w{index}", "room": f"fw{index}-0"}, label)
        if conn is None:
            return
        walks = self.config.rooms_per_walk
        for k in range(1, walks + 1):
            if not await conn.send(Probe(f"/join fw{index}-{k}", "join", False)):
                break
        outcome = await conn.finish(label, {"closed by us"}, answer_needed=False)
        entered = conn.counts["you are in"]
        if outcome == "closed by us" and entered != walks + 1:
            self.report.anomaly(f"{label}: entered {entered} of {walks + 1} rooms")

    async def churn_one(self, index: int) -> None:
        """Connect, enter a new room, then close cleanly or drop with a TCP reset. Refused
        with 429 (the address's connections not yet ended on the node), try again after
        its Retry-After, as a polite client does."""
        json_mode = index % 2 == 0
        room = f"churn-{index}"
        for _ in range(CHURN_TRIES):
            sock = await self.raw(f"name=fz-c{index}&room={room}", json_mode=json_mode)
            if sock is not None:
                break
            await asyncio.sleep(1.0)  # Retry-After: 1
        else:
            return
        try:
            if json_mode:
                entered = await sock.until(lambda t: '"type":"subscribed"' in t)
            else:
                entered = await sock.until(lambda t: t.startswith(f"* you are in {room}"))
            if not entered:
                self.judge(f"churn {index}", "not entered", set())
                return
            if index % 3 == 0:
                sock.abort()
                self.judge(f"churn {index}", "dropped by us", {"dropped by us"})
                return
            sock.send(0x8, (1000).to_bytes(2, "big"))
            self.report.frames += 1
            self.judge(f"churn {index}", await sock.ending(), {"close 1000"})
        finally:
            await sock.close()

    # phases ---------------------------------------------------------------------

    async def protocol_phase(self) -> None:
        """Random frames, handshakes, broken framing and slow readers, all at once."""
        config = self.config
        handshakes = asyncio.Semaphore(4)

        async def handshake(index: int) -> None:
            async with handshakes:
                await self.handshake_fuzzer(index)

        async with asyncio.TaskGroup() as group:
            for mode in ("json", "text"):
                for index in range(config.fuzzers):
                    group.create_task(self.guarded(f"{mode} fuzzer {index}",
                                                   self.protocol_fuzzer(mode, index)))  # fmt: skip
            for index in range(config.handshakes):
                group.create_task(self.guarded(f"handshake {index}", handshake(index)))
            group.create_task(self.guarded("raw cases", self._raw_rounds()))
            group.create_task(self.guarded("slow readers", self._slow_readers()))

    async def _slow_readers(self) -> None:
        """One at a time: each one's close is told by the node's counter going up."""
        for index in range(self.config.slow_readers):
            for mode in ("json", "text"):
                await self.slow_reader(mode, index)

    async def _raw_rounds(self) -> None:
        for round_index in range(self.config.raw_rounds):
            await self.raw_cases(round_index)

    async def rooms_phase(self) -> None:
        """Thousands of rooms: floods holding 50 each, text walks, and churn."""
        config = self.config
        all_full = asyncio.Event()
        full: list[int] = []
        churn = asyncio.Semaphore(config.churn_parallel)

        async def churn_one(index: int) -> None:
            async with churn:
                await self.churn_one(index)

        async with asyncio.TaskGroup() as group:
            for index in range(config.room_floods):
                group.create_task(self.guarded(f"room flood {index}",
                                               self.room_flood(index, all_full, full)))  # fmt: skip
            for index in range(config.text_room_walks):
                group.create_task(self.guarded(f"room walk {index}", self.room_walk(index)))
        async with asyncio.TaskGroup() as group:
            for index in range(config.churn):
                group.create_task(self.guarded(f"churn {index}", churn_one(index)))


# --------------------------------------------------------------------------- raw cases

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9
INVALID_UTF8 = [
    b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"ok \xf8\x88\x80\x80\x80",
    b'{"type":"ping","ref":"\xff"}', b"\xf4\x90\x80\x80", b"hello \xe2\x82\xa1\xa1",
]  # fmt: skip
_raw_names = itertools.count(1)
RawResult = tuple[Outcome, str]


async def _upgraded(run: FuzzRun, json_mode: bool, *, named: bool = True) -> RawSocket | None:
    """A raw connection through the handshake and into its first room."""
    query = f"name=fz-r{next(_raw_names)}&room=fz-raw" if named else "room=fz-raw"
    sock = await run.raw(query, json_mode=json_mode)
    if sock is None:
        return None
    if not named:
        entered = await sock.until(lambda t: t == "Your name:")
    elif json_mode:
        entered = await sock.until(lambda t: '"type":"subscribed"' in t)
    else:
        entered = await sock.until(lambda t: t.startswith("* you are in "))
    if not entered:
        await sock.close()
        run.report.anomaly(f"raw connection {query}: never entered its room")
        return None
    return sock


async def _send_frames(
    run: FuzzRun, rng: random.Random, frames: list[bytes], detail: str, *,
    named: bool = True, answer: str | None = None, json_mode: bool | None = None,
) -> RawResult:  # fmt: skip
    """Upgrade (JSON or text, at random unless told), write `frames`, and see how the
    node ends the connection.

    With `answer`, the node must instead answer (a text frame containing it) and stay
    open; then we close with 1000 and expect its 1000 back."""
    if json_mode is None:
        json_mode = named and rng.random() < 0.5
    sock = await _upgraded(run, json_mode, named=named)
    if sock is None:
        return "upgrade failed", detail
    try:
        for frame in frames:
            sock.writer.write(frame)
        run.report.frames += len(frames)
        if answer is None:
            return await sock.ending(), detail
        if not await sock.until(lambda t: answer in t):
            return "not answered", f"{detail}; got {sock.texts[-3:]}"
        sock.send(CLOSE, (1000).to_bytes(2, "big"))
        return await sock.ending(), detail
    finally:
        await sock.close()


async def invalid_utf8(run: FuzzRun, rng: random.Random) -> RawResult:
    payload = rng.choice(INVALID_UTF8)
    return await _send_frames(run, rng, [encode_frame(TEXT, payload)], f"payload {payload!r}")


async def invalid_utf8_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    frames = [encode_frame(TEXT, b"ok \xe2", fin=False), encode_frame(0x0, b"\x28\xa1")]
    return await _send_frames(run, rng, frames, "a split 3-byte sequence, broken")


async def invalid_utf8_as_name(run: FuzzRun, rng: random.Random) -> RawResult:
    frames = [encode_frame(TEXT, rng.choice(INVALID_UTF8))]
    return await _send_frames(run, rng, frames, "typed at 'Your name:'", named=False)


async def reserved_bits(run: FuzzRun, rng: random.Random) -> RawResult:
    rsv = rng.randint(1, 7)
    return await _send_frames(run, rng, [encode_frame(TEXT, b"hi", rsv=rsv)], f"rsv={rsv}")


async def reserved_opcode(run: FuzzRun, rng: random.Random) -> RawResult:
    opcode = rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    return await _send_frames(run, rng, [encode_frame(opcode, b"x")], f"opcode {opcode}")


async def long_ping(run: FuzzRun, rng: random.Random) -> RawResult:
    return await _send_frames(run, rng, [encode_frame(PING, b"p" * 126)], "126-byte ping")


async def fragmented_ping(run: FuzzRun, rng: random.Random) -> RawResult:
    return await _send_frames(run, rng, [encode_frame(PING, b"p", fin=False)], "ping, fin=0")


async def continuation_first(run: FuzzRun, rng: random.Random) -> RawResult:
    return await _send_frames(run, rng, [encode_frame(0x0, b"orphan")], "continuation first")


async def text_inside_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    frames = [encode_frame(TEXT, b"one", fin=False), encode_frame(TEXT, b"two")]
    return await _send_frames(run, rng, frames, "a new text frame inside a fragmented one")


async def huge_length(run: FuzzRun, rng: random.Random) -> RawResult:
    length = rng.choice([MAX_FRAME_BYTES + 1, 1 << 31, 1 << 62])
    frame = encode_frame(TEXT, b"", length=length)
    return await _send_frames(run, rng, [frame], f"a header claiming {length} bytes")


async def fragments_over_limit(run: FuzzRun, rng: random.Random) -> RawResult:
    part = b"f" * (16 * 1024)
    frames = [encode_frame(TEXT if i == 0 else 0x0, part, fin=False) for i in range(4)]
    frames.append(encode_frame(0x0, b"f" * 16))
    return await _send_frames(run, rng, frames, "five fragments, 64 KiB + 16 in all")


async def close_bad_code(run: FuzzRun, rng: random.Random) -> RawResult:
    code = rng.choice([0, 999, 1004, 1005, 1006, 1015, 1100, 2999, 5000, 65535])
    frame = encode_frame(CLOSE, code.to_bytes(2, "big"))
    return await _send_frames(run, rng, [frame], f"close code {code}")


async def close_one_byte(run: FuzzRun, rng: random.Random) -> RawResult:
    return await _send_frames(run, rng, [encode_frame(CLOSE, b"\x03")], "a 1-byte close payload")


async def unmasked(run: FuzzRun, rng: random.Random) -> RawResult:
    """RFC 6455 5.1: a server closes on an unmasked client frame, with 1002 (the node's
    frame watch does; aiohttp alone would read it as if masked). It is never run."""
    frame = encode_frame(TEXT, b'{"type":"ping","ref":"bare"}', mask=False)
    return await _send_frames(run, rng, [frame], "an unmasked client frame")


async def garbage(run: FuzzRun, rng: random.Random) -> RawResult:
    data = rng.randbytes(rng.randint(1, 300))
    return await _send_frames(run, rng, [data], f"{len(data)} random bytes, {data[:12]!r}...")


async def random_binary(run: FuzzRun, rng: random.Random) -> RawResult:
    frame = encode_frame(BINARY, rng.randbytes(rng.randint(0, 2000)))
    return await _send_frames(run, rng, [frame], "a binary frame", answer="binary")


def _asking(json_mode: bool, word: str) -> tuple[bytes, str]:
    """A frame the node answers with `word` in it (a pong's ref, or an unknown command)."""
    if json_mode:
        return json.dumps({"type": "ping", "ref": word}).encode(), f'"ref":"{word}"'
    return f"/{word}".encode(), f"/{word}"


async def ping_inside_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    json_mode = rng.random() < 0.5
    body, answer = _asking(json_mode, "fuzzfrag")
    frames = [
        encode_frame(TEXT, body[:4], fin=False),
        encode_frame(PING, b"mid"),
        encode_frame(0x0, body[4:]),
    ]
    detail = "a ping between two fragments"
    return await _send_frames(run, rng, frames, detail, answer=answer, json_mode=json_mode)


async def byte_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    json_mode = rng.random() < 0.5
    body, answer = _asking(json_mode, "fuzzbytes")
    frames = [
        encode_frame(TEXT if i == 0 else 0x0, body[i : i + 1], fin=i == len(body) - 1)
        for i in range(len(body))
    ]
    detail = "a frame in 1-byte fragments"
    return await _send_frames(run, rng, frames, detail, answer=answer, json_mode=json_mode)


async def _http(run: FuzzRun, request: bytes, *, drop: str = "") -> Outcome:
    """Write a (broken) handshake; the HTTP status, or drop the connection half way
    (`drop` "reset": a TCP reset; "close": a plain close)."""
    run.report.connections += 1
    sock = await RawSocket.connect(run.node.port)
    try:
        sock.writer.write(request)
        if drop == "reset":
            sock.abort()
        if drop:
            return "dropped by us"
        try:
            return f"http {await sock.status()}"
        except (asyncio.IncompleteReadError, ConnectionError):
            return "eof"
    finally:
        await sock.close()


def _handshake(headers: str) -> bytes:
    return RawSocket.request("name=fz-http", json_mode=False, headers=headers)


async def connect_and_leave(run: FuzzRun, rng: random.Random) -> RawResult:
    drop = rng.choice(["reset", "close"])
    return await _http(run, b"", drop=drop), f"TCP connect, nothing sent, then {drop}"


async def partial_request(run: FuzzRun, rng: random.Random) -> RawResult:
    request = RawSocket.request("name=fz-part", json_mode=True)
    cut = rng.randint(1, len(request) - 1)
    drop = rng.choice(["reset", "close"])
    return await _http(run, request[:cut], drop=drop), f"{cut} bytes of the handshake, {drop}"


async def drop_before_answer(run: FuzzRun, rng: random.Random) -> RawResult:
    request = RawSocket.request(f"name=fz-d{next(_raw_names)}", json_mode=rng.random() < 0.5)
    return await _http(run, request, drop="reset"), "the whole handshake, then a reset"


async def bad_version(run: FuzzRun, rng: random.Random) -> RawResult:
    key = base64.b64encode(os.urandom(16)).decode()
    headers = (
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 8\r\n"
    )
    return await _http(run, _handshake(headers)), "Sec-WebSocket-Version: 8"


async def no_key(run: FuzzRun, rng: random.Random) -> RawResult:
    headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    return await _http(run, _handshake(headers)), "no Sec-WebSocket-Key"


async def modeless_offer(run: FuzzRun, rng: random.Random) -> RawResult:
    """chat. subprotocols and no mode, a credential among them: 400 before the upgrade
    (aiohttp would log the offer whole and go on in text mode)."""
    key = base64.b64encode(os.urandom(16)).decode()
    mode = rng.choice(["chat.v2.json", "chat.v1.JSON", "CHAT.V1.TEXT", "chat.", "graphql-ws"])
    secret = rng.choice(["token", "session"])
    offer = f"{mode}, chat.{secret}.{rng.randbytes(12).hex()}"
    headers = (
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {offer}\r\n"
    )
    return await _http(run, _handshake(headers)), f"Sec-WebSocket-Protocol: {mode}, chat.{secret}."


async def garbage_request(run: FuzzRun, rng: random.Random) -> RawResult:
    data = rng.randbytes(rng.randint(1, 200)) + b"\r\n\r\n"
    return await _http(run, data), f"{len(data)} random bytes as HTTP"


async def huge_header(run: FuzzRun, rng: random.Random) -> RawResult:
    headers = f"X-Fuzz: {'h' * 20000}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    return await _http(run, _handshake(headers)), "a 20 kB header"


async def nested_body(run: FuzzRun, rng: random.Random) -> RawResult:
    """A REST body nested far deeper than any parser's stack (the standard library's
    raised RecursionError: a 500 and a traceback), with the API key, so it is read."""
    depth = rng.randint(2_000, 100_000)
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    body = opener * depth + (closer * depth if rng.random() < 0.5 else b"")
    method, path = rng.choice(
        [("POST", "/api/rooms/lobby/messages"), ("PUT", "/api/rooms/lobby/bans/fz-nested")]
    )
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer {FUZZ_API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return await _http(run, head.encode() + body), f"{method} {path}, a body {depth} deep"


async def colonless_header(run: FuzzRun, rng: random.Random) -> RawResult:
    headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nno colon here\r\n"
    return await _http(run, _handshake(headers)), "a header line without a colon"


async def long_request_line(run: FuzzRun, rng: random.Random) -> RawResult:
    url = "/ws?session=" + "s" * rng.randint(8200, 20000)
    return await _http(run, f"GET {url} HTTP/1.1\r\n\r\n".encode()), "a request line over 8 KiB"


async def many_headers(run: FuzzRun, rng: random.Random) -> RawResult:
    headers = "".join(f"X-F{i}: f\r\n" for i in range(rng.randint(101, 300)))
    return await _http(run, _handshake(headers)), "over 100 header lines"


async def reset_after_upgrade(run: FuzzRun, rng: random.Random) -> RawResult:
    run.report.connections += 1
    sock = await RawSocket.connect(run.node.port)
    json_mode = rng.random() < 0.5
    query = f"name=fz-u{next(_raw_names)}&room=fz-raw" if json_mode else "room=fz-raw"
    status = await sock.upgrade(query, json_mode=json_mode)
    sock.abort()
    await sock.close()
    return ("dropped by us" if status == 101 else f"http {status}"), "reset right after 101"


async def half_close(run: FuzzRun, rng: random.Random) -> RawResult:
    """Shut our sending side after the handshake: the node sees EOF and must end it."""
    sock = await _upgraded(run, rng.random() < 0.5)
    if sock is None:
        return "upgrade failed", ""
    try:
        sock.writer.write_eof()
        return await sock.ending(), "write side shut after the handshake"
    finally:
        await sock.close()


async def close_first(run: FuzzRun, rng: random.Random) -> RawResult:
    frame = encode_frame(CLOSE, (1000).to_bytes(2, "big") + b"bye")
    return await _send_frames(run, rng, [frame], "a close frame first")


BROKEN_FRAMING = {f"close {PROTOCOL_ERROR}"}
# Random bytes may make any broken frame, or a frame still waiting for the rest of itself.
ANY_REFUSAL = {*BROKEN_FRAMING, f"close {INVALID_TEXT}", f"close {TOO_BIG}", "no answer"}
RawCase = Callable[[FuzzRun, random.Random], Awaitable[RawResult]]
RAW_CASES: list[tuple[str, RawCase, set[Outcome]]] = [
    ("invalid UTF-8", invalid_utf8, {f"close {INVALID_TEXT}"}),
    ("invalid UTF-8 across fragments", invalid_utf8_fragments, {f"close {INVALID_TEXT}"}),
    ("invalid UTF-8 as a name", invalid_utf8_as_name, {f"close {INVALID_TEXT}"}),
    ("reserved bits", reserved_bits, BROKEN_FRAMING),
    ("reserved opcode", reserved_opcode, BROKEN_FRAMING),
    ("ping over 125 bytes", long_ping, BROKEN_FRAMING),
    ("fragmented ping", fragmented_ping, BROKEN_FRAMING),
    ("continuation first", continuation_first, BROKEN_FRAMING),
    ("text inside fragments", text_inside_fragments, BROKEN_FRAMING),
    ("huge length", huge_length, {f"close {TOO_BIG}"}),
    ("fragments over the limit", fragments_over_limit, {f"close {TOO_BIG}"}),
    # aiohttp takes 1006 in a close frame (RFC 6455 7.4.1 says it must not be sent): 1000.
    ("close with a bad code", close_bad_code, {*BROKEN_FRAMING, "close 1000"}),
    ("close with one byte", close_one_byte, BROKEN_FRAMING),
    ("unmasked frame", unmasked, BROKEN_FRAMING),
    ("random bytes", garbage, ANY_REFUSAL),
    ("binary frame", random_binary, {"close 1000"}),
    ("ping inside fragments", ping_inside_fragments, {"close 1000"}),
    ("1-byte fragments", byte_fragments, {"close 1000"}),
    ("connect and leave", connect_and_leave, {"dropped by us"}),
    ("partial handshake", partial_request, {"dropped by us"}),
    ("reset before the answer", drop_before_answer, {"dropped by us"}),
    ("version 8", bad_version, {"http 400", "http 426", "http 101"}),  # aiohttp takes 8
    ("no key", no_key, {"http 400"}),
    ("a chat. offer without a mode", modeless_offer, {"http 400"}),
    ("random request", garbage_request, {"http 400", "eof"}),
    ("huge header", huge_header, {"http 431"}),
    ("header without a colon", colonless_header, {"http 400"}),
    ("request line too long", long_request_line, {"http 414"}),
    ("too many headers", many_headers, {"http 431"}),
    ("deeply nested REST body", nested_body, {"http 400"}),
    ("reset after the upgrade", reset_after_upgrade, {"dropped by us"}),
    ("half close", half_close, {"close 1000", "eof"}),
    ("close first", close_first, {"close 1000"}),
]


# --------------------------------------------------------------------------- honest users


class Honest:
    """Two honest users on the fuzzed node, one JSON and one text, in HONEST_ROOM: each
    message one sends must reach the other, once."""

    def __init__(self, run: FuzzRun) -> None:
        self.run = run
        self.j_sent: list[str] = []  # acked
        self.t_sent: list[str] = []
        self.j_got: list[str] = []  # texts from honest-t that honest-j received
        self.t_got: list[str] = []  # texts from honest-j that honest-t received
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.t_end = asyncio.Event()
        self.progress = asyncio.Event()
        self.j: aiohttp.ClientWebSocketResponse | None = None
        self.t: aiohttp.ClientWebSocketResponse | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        http, url = self.run.http, self.run.node.url
        async with asyncio.timeout(STEP):
            self.j = await http.ws_connect(
                url, params={"name": "honest-j", "room": HONEST_ROOM}, protocols=(JSON_PROTOCOL,)
            )
            while json.loads(await self.j.receive_str())["type"] != "subscribed":
                pass
            self.t = await http.ws_connect(url, params={"name": "honest-t", "room": HONEST_ROOM})
            while not (await self.t.receive_str()).startswith("* you are in"):
                pass
        self.tasks = [
            asyncio.create_task(self._read_j(self.j)),
            asyncio.create_task(self._read_t(self.t)),
        ]

    async def _read_j(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame["type"] == "message" and frame["from"] == "honest-t":
                self.j_got.append(frame["text"])
                self.progress.set()
            future = self.acks.get(str(frame.get("ref")))
            if future is not None and not future.done():
                future.set_result(frame)
        self._ended("honest-j", ws)

    async def _read_t(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            for line in str(msg.data).split("\n"):
                if line.startswith("honest-j: "):
                    self.t_got.append(line.removeprefix("honest-j: "))
                    self.progress.set()
                elif line.startswith("! unknown command /honest-end"):
                    self.t_end.set()
                elif line.startswith("! "):  # a message of ours refused (say, unavailable)
                    self.run.report.honest_refused.append(f"honest-t: {line}")
        self._ended("honest-t", ws)

    def _ended(self, name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        if not self.closing:
            self.run.report.anomaly(f"{name} was disconnected: close code {ws.close_code}")

    closing = False

    async def chat(self, stop: asyncio.Event) -> None:
        """Both talk, every honest_interval seconds, until `stop`."""
        assert self.j is not None and self.t is not None
        for n in itertools.count():
            if stop.is_set():
                return
            text = f"honest-t {n}"
            await self.t.send_str(text)
            self.t_sent.append(text)
            text, ref = f"honest-j {n}", f"hj{n}"
            future = self.acks[ref] = asyncio.get_running_loop().create_future()
            frame = {"type": "send", "room": HONEST_ROOM, "text": text, "ref": ref, "id": ref}
            await self.j.send_str(json.dumps(frame))
            try:
                async with asyncio.timeout(STEP):
                    answer = await future
            except TimeoutError:
                self.run.report.anomaly(f"honest-j: no answer to {ref} within {STEP}s")
                return
            if answer["type"] == "ack":
                self.j_sent.append(text)
            else:
                self.run.report.honest_refused.append(f"honest-j: {answer}")
            await asyncio.sleep(self.run.config.honest_interval)

    async def first_exchange(self) -> None:
        """Wait (bounded) until each has received something from the other."""
        async with asyncio.timeout(STEP):
            while not (self.j_got and self.t_got):
                self.progress.clear()
                await self.progress.wait()

    async def finish(self) -> None:
        """After the last message: wait (bounded) for everything sent to arrive, and count."""
        assert self.t is not None
        with contextlib.suppress(Exception):
            await self.t.send_str("/honest-end")  # answered after every line before it
            async with asyncio.timeout(STEP):
                await self.t_end.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STEP):
                while set(self.t_sent) - set(self.j_got) or set(self.j_sent) - set(self.t_got):
                    self.progress.clear()
                    await self.progress.wait()
        report = self.run.report
        report.honest_sent = len(self.j_sent) + len(self.t_sent)
        report.honest_received = len(set(self.j_got) & set(self.t_sent)) + len(
            set(self.t_got) & set(self.j_sent)
        )
        report.honest_lost = report.honest_sent - report.honest_received
        missing = sorted(set(self.t_sent) - set(self.j_got)) + sorted(
            set(self.j_sent) - set(self.t_got)
        )
        report.honest_missing = missing[:10]
        report.honest_duplicated = (len(self.j_got) - len(set(self.j_got))) + (
            len(self.t_got) - len(set(self.t_got))
        )
        if report.honest_duplicated:
            report.anomaly(f"honest users got {report.honest_duplicated} messages twice")
        for refusal in report.honest_refused[:5]:
            report.anomaly(f"an honest user was refused: {refusal}")

    async def close(self) -> None:
        self.closing = True
        for ws in (self.j, self.t):
            if ws is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STEP):
                        await ws.close()
        for task in self.tasks:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STEP):
                    await task


# --------------------------------------------------------------------------- running


async def run_fuzz(config: FuzzConfig, node_log: Path | None = None) -> FuzzReport:
    """Start a node, fuzz it with the honest users chatting, let it settle, measure."""
    report = FuzzReport(config)
    # Every fuzz client comes from one address, and the rooms phase enters thousands of
    # rooms from it on purpose (floods, walks, churn): the join budgets, which would refuse
    # most of that (tests/test_budgets.py tests them), are off, as in the bench.
    extra: list[str] = ["--join-rate", "0", "--join-rate-per-ip", "0"]
    if config.redis_url:
        prefix = f"fuzz-{config.seed}-{os.getpid()}-{time.time_ns()}:"
        extra += ["--redis-url", config.redis_url, "--redis-prefix", prefix]
    node = FuzzedNode(None, *extra, "--api-key", FUZZ_API_KEY)
    await asyncio.to_thread(node.start)
    started = time.monotonic()
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await _fuzz(FuzzRun(config, node, http, report))
    finally:
        report.seconds = time.monotonic() - started
        report.node_exited = not node.alive()
        await asyncio.to_thread(node.stop)
        report.node_tracebacks = node.tracebacks()
        report.node_failures = node.failures()
        report.node_warnings = node.warnings()
        if node_log is not None:
            await asyncio.to_thread(node_log.write_text, node.log())
        node.close()
    return report


async def _fuzz(run: FuzzRun) -> None:
    report, node = run.report, run.node
    report.rss_start = node.memory()
    honest = Honest(run)
    await honest.connect()
    stop = asyncio.Event()
    chat = asyncio.create_task(honest.chat(stop))
    health = asyncio.create_task(run.watch_health())
    try:
        await honest.first_exchange()
        report.rss_before = node.memory()
        try:
            async with asyncio.timeout(run.config.time_cap):
                for index in range(run.config.rounds):
                    run.round = index
                    await run.protocol_phase()
                    await run.rooms_phase()
                    # Only the honest users are left: the node's memory now, round by round.
                    if not await run.settle(2, (HONEST_ROOM,)):
                        report.anomaly(
                            f"round {run.round} did not settle: {report.connections_left:g} "
                            f"connections, rooms {report.rooms_left[:10]}"
                        )
                    report.rss_rounds.append(node.memory())
        except TimeoutError:
            report.time_capped = True
        report.slow_consumers_closed = int(await run.metric("chat_slow_consumers_closed_total"))
        stop.set()
        async with asyncio.timeout(2 * STEP):
            await chat
        await honest.finish()
    finally:
        stop.set()
        health.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await health
        if not chat.done():
            chat.cancel()
        await honest.close()
    report.rss_peak = node.memory("VmHWM")
    report.settled = await run.settle()
    report.rss_after = node.memory()
    if run.config.linger:
        await asyncio.sleep(run.config.linger)  # waiting out the node's timers, on purpose
        report.rss_later = node.memory()
    try:
        report.healthz_after, _ = await run.get("/healthz")
    except (aiohttp.ClientError, TimeoutError, ConnectionError):
        report.healthz_after = None


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def table(report: FuzzReport) -> str:
    config = report.config
    broker = f"redis ({config.redis_url})" if config.redis_url else "in-process"
    rows = [
        ("broker", broker),
        ("seed", str(config.seed)),
        ("seconds", f"{report.seconds:.1f}" + (" (TIME CAP REACHED)" * report.time_capped)),
        ("frames tried", f"{report.frames:,}"),
        ("connections opened", f"{report.connections:,}"),
        ("crashes (exit or /healthz failed)",
         f"{report.crashes} ({report.healthz_checks} health checks)"),
        ("honest messages sent / received / lost",
         f"{report.honest_sent} / {report.honest_received} / {report.honest_lost}"),
        ("honest messages refused (error answers)", str(len(report.honest_refused))),
        ("anomalies (wrong endings)", str(report.anomaly_count)),
        ("tracebacks in the node's log",
         f"{len(report.node_tracebacks)} ({len(report.node_failures)} failures of the node)"),
        ("join floods: rooms granted each", _spread(report.room_flood_subscribed)),
        ("rooms at once at the peak", f"{report.rooms_at_peak:,}"),
        ("slow readers closed (1008)", str(report.slow_consumers_closed)),
        ("node RSS at start", _mib(report.rss_start)),
        ("node RSS before the fuzz", _mib(report.rss_before)),
        ("node RSS at peak (VmHWM)", _mib(report.rss_peak)),
        ("node RSS after each round (settled)", ", ".join(_mib(n) for n in report.rss_rounds)),
        ("node RSS after (all closed, settled)", _mib(report.rss_after)),
        ("after - before", _mib(report.rss_after - report.rss_before)),
        (f"node RSS {config.linger:g} s later (aiohttp's timers out)",
         _mib(report.rss_later) if config.linger else "-"),
        ("connections left", f"{report.connections_left:g}"),
        ("rooms left in /api/rooms", str(len(report.rooms_left))),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"how connections ended: {_counts(report.outcomes)}")
    lines.append(f"error answers: {_counts(report.error_codes)}")
    if report.honest_missing:
        lines.append(f"honest messages lost: {report.honest_missing}")
    lines.append("the node's warnings and errors:")
    lines += [f"  {n:6,}  {text}" for text, n in report.node_warnings.most_common(25)]
    for anomaly in report.anomalies:
        lines.append(f"ANOMALY {anomaly}")
    for traceback in report.node_failures[:5]:
        lines.append(f"NODE FAILURE\n{traceback}")
    return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counter.most_common())


def _spread(values: list[int]) -> str:
    if not values:
        return "-"
    return f"{min(values)} to {max(values)} (of {len(values)} floods)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=FuzzConfig.seed)
    parser.add_argument("--redis-url", help="fuzz a node on this Redis (default: in-process)")
    parser.add_argument("--time-cap", type=float, default=FuzzConfig.time_cap)
    parser.add_argument("--rounds", type=int, default=FuzzConfig.rounds)
    parser.add_argument("--node-log", type=Path, help="write the node's whole log here")
    args = parser.parse_args(argv)
    config = FuzzConfig(
        seed=args.seed, redis_url=args.redis_url, time_cap=args.time_cap, rounds=args.rounds
    )
    report = asyncio.run(run_fuzz(config, args.node_log))
    print(table(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
