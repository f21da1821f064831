"""What an unfinished HTTP request may cost a node: admission of TCP connections.

Every connection the node accepts passes through a `HeadGate`, a small protocol in
front of aiohttp's, until its first request head is complete:

- a connection is refused at once, before anything is read, when its peer already
  holds `--max-connections-per-ip` connections (429), or when the node holds
  `--max-connections` plus `NODE_ROOM` (503). Every open connection counts: an
  upgraded WebSocket, a request in progress, a head still arriving. A trusted proxy
  (`--trusted-proxies`) speaks for many clients and which one is not known before its
  head is read, so its connections count only toward the node's cap; its WebSockets
  count per client address in gateway/guard.py, as before;
- the head must be complete within `--header-timeout` (408), its request line at most
  `MAX_REQUEST_LINE` bytes (414), the whole head at most `--max-header-bytes` in at most
  `MAX_HEADER_LINES` header lines (431). The gate counts the bytes before aiohttp
  buffers them, and no request's URL or headers are logged.

Once aiohttp has read the head and makes a request of it, the gate steps out of the
path (`transport.set_protocol`): an upgraded WebSocket's frames go straight to aiohttp,
at no cost per frame. The connection is counted until aiohttp's task for it ends. A
request from a peer that is not a trusted proxy is answered with `Connection: close`,
so its next head, which the gate would not see, is never read, and no keep-alive
connection idles holding buffers.

A refusal is answered with a short plain-text response, then the gate reads and drops
whatever else the client sends for at most `LINGER` seconds, so the client reads the
answer instead of a reset. Each one is counted in `chat_connections_refused{reason}`
and logged (sampled: see gateway/server_log.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from typing import cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from gateway.config import Settings
from gateway.guard import HOLDS, Hold
from gateway.head import HEADERS_TOO_LARGE, REQUEST_LINE_TOO_LONG, HeadBounds, HeadScan
from gateway.metrics import Metrics
from gateway.proxies import Network, is_trusted
from gateway.server_log import SampledLog

log = logging.getLogger(__name__)

NODE_ROOM = 32  # connections over --max-connections still taken: probes, scrapes, REST
LINGER = 2.0  # seconds a refused connection is read (and dropped) before it is closed
PER_IP = "per_ip"
NODE_FULL = "node_full"
HEADER_TIMEOUT = "header_timeout"
BAD_REQUEST = "bad_request"

REFUSALS: dict[str, tuple[HTTPStatus, str]] = {
    PER_IP: (HTTPStatus.TOO_MANY_REQUESTS, "too many connections from your address"),
    NODE_FULL: (HTTPStatus.SERVICE_UNAVAILABLE, "this node is full"),
    HEADER_TIMEOUT: (HTTPStatus.REQUEST_TIMEOUT, "request head not complete in time"),
    HEADERS_TOO_LARGE: (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"),
    REQUEST_LINE_TOO_LONG: (HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long"),
}


def refusal_response(reason: str) -> bytes:
    """The whole HTTP response a connection refused for `reason` gets."""
    status, text = REFUSALS[reason]
    body = (text + "\n").encode()
    retry = "Retry-After: 1\r\n" if status in (429, 503) else ""
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n"
    )
    return head.encode() + body


class Admission:
    """The node's open connections, by peer address, and the gates reading heads."""

    def __init__(self, settings: Settings, metrics: Metrics, trusted: tuple[Network, ...]) -> None:
        self._metrics = metrics
        self._trusted = trusted
        self.max_connections = settings.max_connections
        self.max_per_ip = settings.max_connections_per_ip
        self.header_timeout = settings.header_timeout
        self.bounds = HeadBounds(max_bytes=settings.max_header_bytes)
        self.total = 0  # connections open, of every kind
        self.per_peer: dict[str, int] = {}  # the same, by peer (no trusted proxy, no zeros)
        self._heads: dict[RequestHandler, HeadGate] = {}  # gates whose head is not read
        self._lingering: set[HeadGate] = set()
        self._log = SampledLog(log)

    def serve(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for `loop.create_server`: a gate in front of each of
        `server`'s request handlers. Hooks `server`'s request factory, so that a gate
        steps out once aiohttp makes a request of its head."""
        make_request = server.request_factory

        def request_factory(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            gate = self._heads.pop(protocol, None)
            hold = None
            if gate is not None:
                hold = gate.head_read(task)  # the handler's task: ends with the connection
                if not gate.trusted:
                    message = message._replace(should_close=True)
            request = make_request(message, payload, protocol, writer, task)
            if hold is not None:
                request[HOLDS] = [hold]
            return request

        server.request_factory = request_factory
        return lambda: HeadGate(self, server())

    def admit(self, gate: HeadGate) -> str | None:
        """Count `gate`'s connection; or the reason it is refused, uncounted."""
        if self.max_connections and self.total >= self.max_connections + NODE_ROOM:
            return NODE_FULL
        peer_full = self.max_per_ip and self.per_peer.get(gate.peer, 0) >= self.max_per_ip
        if peer_full and not gate.trusted:
            return PER_IP
        self.total += 1
        if not gate.trusted:
            self.per_peer[gate.peer] = self.per_peer.get(gate.peer, 0) + 1
        return None

    def release(self, peer: str, trusted: bool) -> None:
        """Stop counting a connection from `peer` (once it is closed and its task ended,
        or the link it was handed to has ended)."""
        self.total -= 1
        if not trusted:
            left = self.per_peer[peer] - 1
            if left:
                self.per_peer[peer] = left
            else:
                del self.per_peer[peer]  # an address gone is forgotten

    def is_trusted(self, peer: str) -> bool:
        """Whether the peer address `peer` is a trusted proxy's."""
        return is_trusted(peer, self._trusted)

    def reading_head(self, gate: HeadGate) -> None:
        """`gate` reads a head: found by its request handler when aiohttp has it."""
        self._heads[gate.inner] = gate

    def done_reading(self, gate: HeadGate) -> None:
        """`gate`'s connection is lost: forget it."""
        self._heads.pop(gate.inner, None)
        self._lingering.discard(gate)

    def refused(self, gate: HeadGate, reason: str) -> None:
        """Count and log a refusal; remember `gate` while it lingers."""
        self._metrics.connections_refused.labels(reason=reason).inc()
        self._log.log(
            logging.WARNING, reason, "refused a connection from %s: %s", gate.peer, reason
        )
        self._heads.pop(gate.inner, None)
        self._lingering.add(gate)

    def bad_request(self, level: int, peer: str, error: HttpProcessingError) -> None:
        """A request aiohttp could not parse (it answers 400 and closes): counted, and
        logged in one line without the request's bytes."""
        self._metrics.connections_refused.labels(reason=BAD_REQUEST).inc()
        level = min(level, logging.WARNING)  # aiohttp: DEBUG for non-HTTP, else ERROR
        self._log.log(
            level,
            f"{BAD_REQUEST}/{level}",
            "bad request from %s: %s (400)",
            peer,
            type(error).__name__,
        )

    def close(self) -> None:
        """Close what is still lingering (the node stops)."""
        for gate in list(self._lingering):
            gate.close()
        self._lingering.clear()


class HeadGate(asyncio.Protocol):
    """One connection until aiohttp has its first request head (see the module)."""

    def __init__(self, admission: Admission, inner: RequestHandler) -> None:
        self._admission = admission
        self.inner = inner
        self.peer = ""
        self.trusted = False
        self._transport: asyncio.Transport | None = None
        self._scan = HeadScan(admission.bounds)
        self._timer: asyncio.TimerHandle | None = None
        self._connected = False  # `inner` has the connection
        self._counted = False
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        self._transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, tuple) else str(peername or "")
        self.trusted = self._admission.is_trusted(self.peer)
        refused = self._admission.admit(self)
        if refused is not None:
            self._refuse(refused)
            return
        self._counted = True
        self._admission.reading_head(self)
        if self._admission.header_timeout:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._admission.header_timeout, self._timed_out)
        self._connected = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped: the answer is written, the connection lingers
        refused = self._scan.feed(data)
        if refused is not None:
            self._refuse(refused)
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._connected and not self._refused:
            self.inner.eof_received()  # aiohttp's: nothing (the transport closes)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._admission.done_reading(self)
        if self._connected:
            self.inner.connection_lost(exc)
        self._release()

    def pause_writing(self) -> None:
        if self._connected:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._connected:
            self.inner.resume_writing()

    def head_read(self, task: asyncio.Task[None]) -> Hold | None:
        """aiohttp made a request of the head: step out of the connection's path,
        still counting it until `task` (the handler's, for the connection) ends, or
        until the connection ends if its handler takes the returned hold over."""
        self._cancel_timer()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.set_protocol(self.inner)
        if not self._counted:
            return None
        self._counted = False  # the hold counts it now (and keeps nothing of the gate)
        hold = Hold(partial(self._admission.release, self.peer, self.trusted))
        task.add_done_callback(lambda _: hold.release())
        return hold

    def close(self) -> None:
        """Close the connection now."""
        if self._transport is not None:
            self._transport.close()

    def _timed_out(self) -> None:
        self._timer = None
        self._refuse(HEADER_TIMEOUT)

    def _refuse(self, reason: str) -> None:
        """Answer `reason`'s response; drop what else arrives; close after LINGER.
        (aiohttp's handler, if it has the connection, is left waiting for a head
        that will not come, and ends when the connection closes.)"""
        transport = self._transport
        assert transport is not None
        self._refused = True
        self._cancel_timer()
        self._admission.refused(self, reason)
        transport.write(refusal_response(reason))
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(LINGER, transport.close)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._admission.release(self.peer, self.trusted)
