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


@dataclass
class Pump:
    """Senders sharing a window: `window` messages in flight (sent, not answered), the
    next one sent as an answer comes back, from the senders in turn. It also waits while
    `lag_limit` of its messages have not come back to their own senders, so that a server
    that acks faster than it delivers cannot pile up an endless queue."""

    senders: list[Sender]
    window: int
    lag_limit: int
    in_flight: int = 0
    sent: int = 0
    echoed: int = 0
    turn: int = 0


@dataclass
class Fleet:
    """Every client of one scenario run, and what they saw."""

    spec: Spec
    track_offsets: bool = False
    clients: list[ChatClient] = field(default_factory=list)
    senders: dict[int, Sender] = field(default_factory=dict)  # client ident -> sender
    pumps: dict[int, Pump] = field(default_factory=dict)  # sender's client ident -> its pump
    rooms: dict[str, list[int]] = field(default_factory=dict)  # room -> member idents
    checker: SequenceChecker = field(default_factory=SequenceChecker)
    latencies_ns: list[int] = field(default_factory=list)
    window: tuple[int, int] | None = None  # monotonic_ns bounds of the measured interval
    window_deliveries: int = 0
    window_acks: int = 0
    untagged: int = 0
    connect_failures: list[str] = field(default_factory=list)
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
        redis = sum(cpu_seconds(pid) or 0.0 for pid in self.spec.redis_pids)
        alive = {pid: cpu for pid, cpu in servers.items() if cpu is not None}
        return Sample(time.monotonic(), alive, redis or 0.0, own_cpu_seconds())

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
            pump = self.pumps.get(sender)
            if pump is not None:
                pump.echoed += 1
                self._pump(pump)

    # connecting ----------------------------------------------------------------

    async def connect(self, clients: list[ChatClient], nodes: list[Node], within: float) -> float:
        """Open `clients` (client i to nodes[i % len]) with a bounded number of handshakes in
        flight, each within `within` seconds; returns the seconds it took. Failures are
        recorded, not raised."""
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

    # sending ---------------------------------------------------------------------

    def make_sender(self, client: ChatClient) -> Sender:
        sender = self.senders[client.ident] = Sender(client)
        return sender

    def send_one(self, sender: Sender, pump: Pump | None = None) -> None:
        """Send `sender`'s next message; within a pump, its answer sends the next one."""
        seq = sender.sent
        sender.sent += 1
        ident = sender.client.ident

        def answered(ok: bool) -> None:
            if ok:
                sender.acked += 1
                window = self.window
                if window is not None and window[0] <= time.monotonic_ns() <= window[1]:
                    self.window_acks += 1
            else:
                sender.refused += 1
                self.checker.refuse(ident, seq)
            if pump is not None:
                pump.in_flight -= 1
                self._pump(pump)

        if pump is not None:
            pump.in_flight += 1
            pump.sent += 1
        sender.client.send(message_text(ident, seq, self.spec.sizes.text_size), answered)

    def start_pump(self, senders: list[Sender], window: int, lag_limit: int) -> Pump:
        """Keep `window` messages of `senders` in flight from now until `running` is off."""
        pump = Pump(senders, max(1, window), max(1, lag_limit))
        for sender in senders:
            self.pumps[sender.client.ident] = pump
        self._pump(pump)
        return pump

    def _pump(self, pump: Pump) -> None:
        tries = len(pump.senders)  # a full round of closed senders ends the loop
        while self.running and pump.in_flight < pump.window and tries > 0:
            if pump.sent - pump.echoed >= pump.lag_limit:
                return
            sender = pump.senders[pump.turn % len(pump.senders)]
            pump.turn += 1
            if sender.client.is_open:
                self.send_one(sender, pump)
                tries = len(pump.senders)
            else:
                tries -= 1

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

    def sent(self) -> dict[tuple[int, int], int]:
        """(receiver, sender) -> messages the sender sent: every member of a room must get
        every message of every sender in it (its own included), bar the refused ones."""
        out: dict[tuple[int, int], int] = {}
        for members in self.rooms.values():
            senders = [self.senders[m] for m in members if m in self.senders]
            for member in members:
                for s in senders:
                    out[(member, s.client.ident)] = s.sent
        return out

    def unanswered(self) -> int:
        return sum(s.sent - s.acked - s.refused for s in self.senders.values())

    def refused(self) -> int:
        return sum(s.refused for s in self.senders.values())

    async def drain(self, within: float) -> Verdict:
        """Stop sending, wait (at most `within` seconds) for every answer and every
        delivery, and judge."""
        self.running = False
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.unanswered() == 0:
                verdict = self.checker.verdict(self.sent())
                if verdict.received >= verdict.expected:
                    break
            await asyncio.sleep(0.05)
        return self.checker.verdict(self.sent())
