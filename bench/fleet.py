"""The load generator's clients as one fleet: connecting them, sending, and keeping count.

A Fleet owns every client of a scenario, the correctness checker, the latencies and
the counters of the measured interval; scenarios (bench/scenarios.py, bench/storm.py)
only say who connects where and who sends how.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.chatclients import ChatClient, GatewayClient, client_class
from bench.checker import SequenceChecker, Verdict, message_text, parse_tag
from bench.params import Node, Spec
from bench.procstat import cpu_seconds, own_cpu_seconds

MAX_PACED_IN_FLIGHT = 1000  # a paced sender stops sending past this many unanswered


@dataclass
class Sample:
    """CPU seconds at one moment: each server process, Redis, the load generator."""

    at: float
    servers: dict[int, float]
    redis: float
    loadgen: float


@dataclass
class Sender:
    """A client that sends numbered messages to its room."""

    client: ChatClient
    sent: int = 0
    acked: int = 0
    refused: int = 0
    lag_limit: int = 0  # >0: wait while this many of its own messages have not come back


@dataclass
class Fleet:
    """Every client of one scenario run, and what they saw."""

    spec: Spec
    track_offsets: bool = False
    clients: list[ChatClient] = field(default_factory=list)
    senders: dict[int, Sender] = field(default_factory=dict)  # client ident -> sender
    rooms: dict[str, list[int]] = field(default_factory=dict)  # room -> member idents
    checker: SequenceChecker = field(default_factory=SequenceChecker)
    latencies_ns: list[int] = field(default_factory=list)
    window: tuple[int, int] | None = None  # monotonic_ns bounds of the measured interval
    window_deliveries: int = 0
    window_acks: int = 0
    untagged: int = 0
    connect_failures: list[str] = field(default_factory=list)
    windows: dict[int, int] = field(default_factory=dict)  # client ident -> its window
    running: bool = True  # False: senders stop sending

    def add(self, room: str) -> ChatClient:
        """A new client for `room` (not connected yet)."""
        ident = len(self.clients)
        cls = client_class(self.spec.peer)
        if cls is GatewayClient:
            client: ChatClient = GatewayClient(ident, room, self._delivered, self.track_offsets)
        else:
            client = cls(ident, room, self._delivered)
        self.clients.append(client)
        self.rooms.setdefault(room, []).append(ident)
        return client

    # measuring -----------------------------------------------------------------

    def sample(self) -> Sample:
        """CPU of every server process (as long as it lives), Redis and this process."""
        servers = {n.pid: cpu_seconds(n.pid) for n in self.spec.nodes}
        redis = cpu_seconds(self.spec.redis_pid) if self.spec.redis_pid else None
        return Sample(
            time.monotonic(),
            {p: c for p, c in servers.items() if c is not None},
            redis or 0.0,
            own_cpu_seconds(),
        )

    def open_window(self) -> Sample:
        self.window = (time.monotonic_ns(), 2**63)
        self.window_deliveries = self.window_acks = 0
        return self.sample()

    def close_window(self) -> Sample:
        assert self.window is not None
        self.window = (self.window[0], time.monotonic_ns())
        return self.sample()

    def _delivered(self, client: ChatClient, payload: bytes) -> None:
        tag = parse_tag(payload)
        if tag is None:
            self.untagged += 1
            return
        sender, seq, sent_ns = tag
        self.checker.observe(client.ident, sender, seq)
        window = self.window
        if window is not None:
            now = time.monotonic_ns()
            if window[0] <= now <= window[1]:
                self.window_deliveries += 1
            if window[0] <= sent_ns <= window[1]:
                self.latencies_ns.append(now - sent_ns)
        if sender == client.ident:
            own = self.senders.get(sender)
            if own is not None and own.lag_limit:
                self._pump(own)

    # connecting ----------------------------------------------------------------

    async def connect(self, clients: list[ChatClient], nodes: list[Node], within: float) -> float:
        """Open `clients` (client i to nodes[i % len]) with a bounded number of handshakes in
        flight; returns the seconds it took. Failures are recorded, not raised."""
        gate = asyncio.Semaphore(self.spec.sizes.connect_concurrency)
        started = time.monotonic()

        async def one(index: int, client: ChatClient) -> None:
            node = nodes[index % len(nodes)]
            async with gate:
                try:
                    await client.open(node.host, node.port, within=within)
                except Exception as exc:  # refused, reset, timed out: counted, not raised
                    self.connect_failures.append(f"{type(exc).__name__}: {exc}"[:200])

        await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        return time.monotonic() - started

    def abort_all(self) -> None:
        for client in self.clients:
            client.abort()

    # sending ---------------------------------------------------------------------

    def make_sender(self, client: ChatClient, lag_limit: int = 0) -> Sender:
        sender = self.senders[client.ident] = Sender(client, lag_limit=lag_limit)
        return sender

    def send_one(self, sender: Sender, on_done: bool = False) -> None:
        """Send `sender`'s next message; with `on_done`, its ack sends the next one."""
        seq = sender.sent
        sender.sent += 1

        def acked(ok: bool) -> None:
            if ok:
                sender.acked += 1
                window = self.window
                if window is not None and window[0] <= time.monotonic_ns() <= window[1]:
                    self.window_acks += 1
            else:
                sender.refused += 1
            if on_done:
                self._pump(sender)

        sender.client.send(message_text(sender.client.ident, seq, self.spec.sizes.text_size), acked)

    def start_windowed(self, sender: Sender, window: int) -> None:
        """Keep `window` messages of `sender` in flight: each ack sends the next."""
        self.windows[sender.client.ident] = window
        self._pump(sender)

    def _pump(self, sender: Sender) -> None:
        window = self.windows.get(sender.client.ident, 0)
        client = sender.client
        while self.running and client.is_open and client.in_flight < window:
            if sender.lag_limit:
                back = self.checker.got(client.ident, client.ident)
                if sender.sent - back >= sender.lag_limit:
                    return
            self.send_one(sender, on_done=True)

    async def paced(self, senders: list[Sender], rate: float, until: float) -> None:
        """Send `rate` messages a second over `senders` in turn until monotonic `until`."""
        if rate <= 0 or not senders:
            return
        start, k = time.monotonic(), 0
        limit = int((until - start) * rate) + 1
        while self.running and k < limit:
            at = start + k / rate
            if at >= until:
                return
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sender = senders[k % len(senders)]
            if sender.client.is_open and sender.client.in_flight < MAX_PACED_IN_FLIGHT:
                self.send_one(sender)
            k += 1

    # the end ---------------------------------------------------------------------

    def expected(self) -> dict[tuple[int, int], int]:
        """(receiver, sender) -> messages the receiver must have: every member of a room
        gets every acked message of every sender in it (the sender's own included)."""
        out: dict[tuple[int, int], int] = {}
        for members in self.rooms.values():
            senders = [self.senders[m] for m in members if m in self.senders]
            for member in members:
                for s in senders:
                    out[(member, s.client.ident)] = s.acked
        return out

    def unanswered(self) -> int:
        return sum(s.sent - s.acked - s.refused for s in self.senders.values())

    async def drain(self, within: float) -> Verdict:
        """Stop sending, wait (bounded) for every ack and every delivery, and judge."""
        self.running = False
        deadline = time.monotonic() + within
        expected = self.expected()
        while time.monotonic() < deadline:
            if self.unanswered() == 0:
                expected = self.expected()
                if self.checker.received >= sum(expected.values()):
                    break
            await asyncio.sleep(0.05)
        return self.checker.verdict(self.expected())
