"""What an unfinished HTTP request may cost a real node (gateway/admission.py).

Raw sockets against `python -m gateway`: heads sent slowly, never finished, too large
or malformed; each wait is bounded by a socket timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.admission import NODE_ROOM
from gateway.config import InvalidSetting, Settings
from tests.conftest import JSON_PROTOCOL, WAIT, metric
from tooling.gateway import GatewayProcess

PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
MALFORMED = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon\r\n\r\n"  # the 46 bytes
MIB = 1024 * 1024


@pytest.fixture
def spawn() -> Iterator[list[GatewayProcess]]:
    """The nodes `start` started; all are stopped at the end."""
    nodes: list[GatewayProcess] = []
    yield nodes
    for node in nodes:
        node.close()


def start(nodes: list[GatewayProcess], *flags: str) -> GatewayProcess:
    node = GatewayProcess(None, *flags)
    nodes.append(node)
    node.start()
    return node


@contextlib.contextmanager
def connections() -> Iterator[list[socket.socket]]:
    """A list to put sockets in; each is closed at the end."""
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def connect(port: int, data: bytes = b"", source: str = "127.0.0.1") -> socket.socket:
    """A connection from `source` that has sent `data`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))
    if data:
        sock.sendall(data)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the node sends until it closes (at most WAIT seconds in all)."""
    received = b""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the node did not close within {WAIT}s; got {received[:200]!r}")


def get(port: int, path: str, source: str = "127.0.0.1", *, close: bool = True) -> bytes:
    """A whole GET on a new connection (asking the node to close it after the answer,
    unless not `close`): the answer, to the node's close."""
    ask = "Connection: close\r\n" if close else ""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{ask}\r\n".encode()
    with connect(port, request, source) as sock:
        return answer(sock)


def refused(node: GatewayProcess, reason: str) -> float:
    body = get(node.port, "/metrics", source="127.0.0.9").partition(b"\r\n\r\n")[2]
    return metric(body.decode(), f'chat_connections_refused_total{{reason="{reason}"}}', 0.0)


def test_slow_heads_beyond_the_per_ip_cap_are_refused_and_released(
    spawn: list[GatewayProcess],
) -> None:
    """Guards against one address holding any number of connections by never finishing
    their heads: the per-address cap counted only upgraded WebSockets."""
    node = start(spawn, "--max-connections-per-ip", "3", "--header-timeout", "30")
    with connections() as slow:
        slow.extend(connect(node.port, PARTIAL_HEAD) for _ in range(3))
        assert get(node.port, "/healthz").startswith(b"HTTP/1.1 429 "), "a 4th was let in"
        # Another address is not held to 127.0.0.1's count.
        assert get(node.port, "/healthz", source="127.0.0.2").startswith(b"HTTP/1.1 200 ")
        assert refused(node, "per_ip") == 1
    served_again(node)


def served_again(node: GatewayProcess) -> None:
    """Wait (bounded) until 127.0.0.1 is served: the node has seen connections close."""
    deadline = time.monotonic() + WAIT
    while not get(node.port, "/healthz").startswith(b"HTTP/1.1 200 "):
        assert time.monotonic() < deadline, "the closed connections are still counted"


async def test_connections_that_ended_are_not_counted(spawn: list[GatewayProcess]) -> None:
    """Guards against a connection still counted after it ended (upgraded WebSockets
    and answered requests, which the gate stops seeing once aiohttp has their head): an
    address would be locked out after a few visits."""
    node = start(spawn, "--max-connections-per-ip", "3")  # one late close to spare
    async with aiohttp.ClientSession() as session:
        for index in range(6):
            deadline = time.monotonic() + WAIT  # the node sees the last close soon after
            while True:
                try:
                    ws = await session.ws_connect(
                        node.url, params={"name": f"u{index}"}, protocols=(JSON_PROTOCOL,)
                    )
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 429 and time.monotonic() < deadline, exc
                    await asyncio.sleep(0.05)  # a bounded poll
            welcome = await ws.receive_json(timeout=WAIT)
            assert welcome["type"] == "welcome", welcome
            await ws.close()
            async with session.get(f"http://127.0.0.1:{node.port}/healthz") as response:
                assert response.status == 200


def test_a_head_not_complete_in_time_gets_408_and_no_connection_idles(
    spawn: list[GatewayProcess],
) -> None:
    """Guards against a connection that sends half a head (or nothing) living as long
    as aiohttp's keep-alive (75 s), and against keep-alive for an untrusted peer."""
    node = start(spawn, "--header-timeout", "1")
    with connections() as socks:
        socks.append(connect(node.port, PARTIAL_HEAD))
        socks.append(connect(node.port))
        for sock in socks:
            assert answer(sock).startswith(b"HTTP/1.1 408 "), "not cut in time"
    assert refused(node, "header_timeout") == 2
    # A request that is complete is answered, and the connection is closed after it
    # (answer() fails if it stays open).
    assert b"\r\nConnection: close\r\n" in get(node.port, "/healthz", close=False)


def test_oversized_heads_get_431_and_the_node_does_not_grow(spawn: list[GatewayProcess]) -> None:
    """Guards against a node buffering what unfinished heads sent: 400 connections with
    120 headers of 8 kB each took a node from 247 to 806 MB. Here 200 with 40 each."""
    node = start(spawn, "--max-connections-per-ip", "0")
    get(node.port, "/healthz")
    before = node.memory()
    header = b"X-Pad: " + b"a" * 8000 + b"\r\n"
    with connections() as socks:
        for _ in range(200):
            sock = connect(node.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(sock)
            with contextlib.suppress(OSError):  # the node may close it once it has answered
                for _ in range(40):
                    sock.sendall(header)
        grown = node.memory() - before
        assert grown < 10 * MIB, f"the node grew by {grown / MIB:.0f} MiB"
        assert answer(socks[0]).startswith(b"HTTP/1.1 431 ")
        assert answer(socks[-1]).startswith(b"HTTP/1.1 431 ")
    assert refused(node, "headers_too_large") == 200


def test_a_malformed_header_line_is_logged_in_one_line_not_a_traceback(
    spawn: list[GatewayProcess],
) -> None:
    """Guards against aiohttp's 12-line traceback at ERROR for each request with a
    header line lacking a colon (1,000 of them wrote 0.6 MB in under a second)."""
    node = start(spawn)
    for _ in range(50):
        with connect(node.port, MALFORMED) as sock:
            assert answer(sock).startswith(b"HTTP/1.0 400 ")
    log = node.log()
    assert "Traceback" not in log, log
    lines = [line for line in log.splitlines() if "bad request from 127.0.0.1" in line]
    assert len(lines) == 1, log  # sampled: one line per 10 s
    assert refused(node, "bad_request") == 50


def test_a_request_line_too_long_gets_414_and_its_url_is_not_logged(
    spawn: list[GatewayProcess],
) -> None:
    """Guards against aiohttp's ERROR line for a request line over 8,190 bytes, which
    held the start of the URL, `?session=` included."""
    node = start(spawn)
    request = b"GET /ws?session=s3cr3t-" + b"x" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(node.port, request) as sock:
        assert answer(sock).startswith(b"HTTP/1.1 414 ")
    assert "s3cr3t" not in node.log()
    assert re.search(r"refused a connection from 127\.0\.0\.1: request_line_too_long", node.log())


def test_behind_a_trusted_proxy_heads_count_toward_the_node_cap_only(
    spawn: list[GatewayProcess],
) -> None:
    """Guards against refusing a proxy's connections at the per-address cap (they are
    many clients'), and against unfinished heads that --max-connections does not count."""
    flags = ("--trusted-proxies", "127.0.0.1", "--max-connections-per-ip", "1")
    node = start(spawn, *flags, "--max-connections", "1", "--header-timeout", "30")
    with connections() as slow:
        slow.extend(connect(node.port, PARTIAL_HEAD) for _ in range(1 + NODE_ROOM))
        for source in ("127.0.0.1", "127.0.0.2"):
            assert get(node.port, "/healthz", source).startswith(b"HTTP/1.1 503 "), source
    served_again(node)
    assert refused(node, "node_full") == 2


def test_a_head_bound_too_small_for_a_browser_is_refused() -> None:
    """Guards against a --max-header-bytes under which no browser could connect."""
    with pytest.raises(InvalidSetting, match="--max-header-bytes must be at least 1024"):
        Settings(max_header_bytes=1000)
    assert Settings(max_header_bytes=1024).max_header_bytes == 1024


async def test_a_websocket_handed_over_after_its_handshake_is_still_counted(
    spawn: list[GatewayProcess],
) -> None:
    """Guards against a WebSocket no longer counted once its handler has returned (after
    the handshake the connection is the link's, gateway/served.py, and aiohttp's task for
    it ends): one address could then hold any number of them."""
    node = start(spawn, "--max-connections-per-ip", "2")
    async with aiohttp.ClientSession() as session:
        sockets = []
        for index in range(2):
            ws = await session.ws_connect(
                node.url, params={"name": f"h{index}"}, protocols=(JSON_PROTOCOL,)
            )
            assert (await ws.receive_json(timeout=WAIT))["type"] == "welcome"
            sockets.append(ws)
        # /healthz is not a WebSocket: only the gate's count of connections can refuse it
        assert get(node.port, "/healthz").startswith(b"HTTP/1.1 429 ")
        for ws in sockets:
            await ws.close()
    served_again(node)
