"""Raw cases at the HTTP level: broken handshakes, dropped ones, bad REST bodies."""

from __future__ import annotations

import base64
import contextlib
import os
import random

from bench.fuzz.config import (
    FUZZ_API_KEY,
    JSON_PROTOCOL,
    MAX_HEADER_LINE,
    MAX_HEADER_LINES,
    MAX_REQUEST_LINE,
    STEP,
    Outcome,
)
from bench.fuzz.raw_frames import RawResult, raw_names
from bench.fuzz.run import FuzzRun
from tooling.wsclient import handshake_request


async def _http(run: FuzzRun, request: bytes, *, drop: str = "") -> Outcome:
    """Write a (broken) handshake; the HTTP status, or drop the connection half way
    (`drop` "reset": a TCP reset; "close": a plain close)."""
    sock = await run.raw_socket()
    try:
        with contextlib.suppress(ConnectionError):  # refused half way: its answer tells
            await sock.write(request)
        if drop == "reset":
            sock.abort()
        if drop:
            return "dropped by us"
        try:
            return f"http {await sock.status(STEP)}"
        except ConnectionError:
            return "eof"
    finally:
        sock.close()


def _upgrade(run: FuzzRun, query: str, json_mode: bool) -> bytes:
    """A well-formed handshake for /ws?`query`."""
    protocol = JSON_PROTOCOL if json_mode else None
    return handshake_request("127.0.0.1", run.node.port, f"/ws?{query}", protocol)[0]


def _handshake(headers: str) -> bytes:
    """A handshake for /ws with `headers` (each line ending in CRLF) in place of the
    upgrade's own."""
    return f"GET /ws?name=fz-http HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


async def connect_and_leave(run: FuzzRun, rng: random.Random) -> RawResult:
    drop = rng.choice(["reset", "close"])
    return await _http(run, b"", drop=drop), f"TCP connect, nothing sent, then {drop}"


async def partial_request(run: FuzzRun, rng: random.Random) -> RawResult:
    request = _upgrade(run, "name=fz-part", json_mode=True)
    cut = rng.randint(1, len(request) - 1)
    drop = rng.choice(["reset", "close"])
    return await _http(run, request[:cut], drop=drop), f"{cut} bytes of the handshake, {drop}"


async def drop_before_answer(run: FuzzRun, rng: random.Random) -> RawResult:
    request = _upgrade(run, f"name=fz-d{next(raw_names)}", json_mode=rng.random() < 0.5)
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
    headers = f"X-Fuzz: {'h' * MAX_HEADER_LINE}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    return await _http(run, _handshake(headers)), f"a header line over {MAX_HEADER_LINE} bytes"


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
    url = "/ws?session=" + "s" * rng.randint(MAX_REQUEST_LINE + 8, 20_000)
    request = f"GET {url} HTTP/1.1\r\n\r\n".encode()
    return await _http(run, request), f"a request line over {MAX_REQUEST_LINE} bytes"


async def many_headers(run: FuzzRun, rng: random.Random) -> RawResult:
    count = rng.randint(MAX_HEADER_LINES + 1, 300)
    headers = "".join(f"X-F{i}: f\r\n" for i in range(count))
    return await _http(run, _handshake(headers)), f"over {MAX_HEADER_LINES} header lines"
