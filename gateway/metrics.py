"""Prometheus metrics of one node, in a registry of its own (no global state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.errors import ErrorCode

# The close code of a refused frame -> the `reason` of chat_frames_refused_total.
FRAME_REFUSALS = {1009: "too_large", 1002: "protocol"}


class BrokerState(Protocol):
    """What the metrics read from the broker at each scrape (gateway/broker/base.py)."""

    def is_ready(self) -> bool:
        """True while the node can chat (what /readyz answers 200 for)."""

    def shards(self) -> dict[str, bool]:
        """Each Redis (shard) the node uses, and whether it works from here."""

    @property
    def nodes_reaped(self) -> int:
        """Dead nodes whose entries this node's reaper removed, since it started."""


class BrokerCollector(Collector):
    """The broker's state as metrics, read when scraped: nothing to keep up to date."""

    def __init__(self, broker: BrokerState) -> None:
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        """`chat_ready`, `chat_redis_shard_up{shard}` and `chat_nodes_reaped_total`."""
        broker = self._broker
        yield GaugeMetricFamily(
            "chat_ready",
            "1 while the node can chat (/readyz answers 200), else 0",
            value=1.0 if broker.is_ready() else 0.0,
        )
        shard_up = GaugeMetricFamily(
            "chat_redis_shard_up",
            "1 while a Redis (a Redis Cluster shard primary, by address) works from this "
            "node: reachable, subscribed and its probe back in time; no series without Redis",
            labels=["shard"],
        )
        for shard, up in sorted(broker.shards().items()):
            shard_up.add_metric([shard], 1.0 if up else 0.0)
        yield shard_up
        yield CounterMetricFamily(
            "chat_nodes_reaped",
            "Dead nodes (heartbeat expired) whose presence and names this node removed",
            value=broker.nodes_reaped,
        )


# Seconds of one garbage collection: most take well under a millisecond.
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

# Seconds from an event's `ts` to the application's 2xx for it.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class EventMetrics:
    """The events feed's metrics (gateway/feed.py): posts, deliveries, drops, backlog."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.posted = Counter(
            "chat_events_posted",
            "Batches of events POSTed to --events-url by this node, by result: ok (2xx), "
            "failed (any other answer), unreachable (no answer in time)",
            ["result"],
            registry=registry,
        )
        results = ("ok", "failed", "unreachable")
        self.posted_by_result = {r: self.posted.labels(result=r) for r in results}
        self.delivered = Counter(
            "chat_events_delivered",
            "Events the application confirmed (2xx) from this node's posts",
            registry=registry,
        )
        self.dropped = Counter(
            "chat_events_dropped",
            "Events dropped unposted at --events-backlog (the oldest of a stream), counted "
            "by the node whose write went over the bound",
            registry=registry,
        )
        self.backlog = Gauge(
            "chat_events_backlog",
            "Events waiting for the application in the partitions this node holds",
            registry=registry,
        )
        self.oldest_age = Gauge(
            "chat_events_oldest_age_seconds",
            "Age of the oldest event waiting in the partitions this node holds (0: none)",
            registry=registry,
        )
        self.lag = Histogram(
            "chat_events_lag_seconds",
            "Seconds from an event's ts to the application's 2xx for it",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.partitions_held = Gauge(
            "chat_events_partitions_held",
            "Event partitions whose lease this node holds (it posts their events)",
            registry=registry,
        )


class Metrics:
    """The node's counters; `render()` gives the /metrics text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "chat_connections", "Open WebSocket connections", ["mode"], registry=self.registry
        )
        # A series for each mode from the start, at 0 (and no labels() per connection).
        self.connection_gauges = {m: self.connections.labels(mode=m) for m in ("json", "text")}
        self.connections_opened = Counter(
            "chat_connections_opened",
            "WebSocket connections opened on this node (upgraded), by mode",
            ["mode"],
            registry=self.registry,
        )
        # A series for each mode from the start, at 0; the children looked up once here,
        # not with labels() per connection.
        self.opened_by_mode = {m: self.connections_opened.labels(mode=m) for m in ("json", "text")}
        self.messages_published = Counter(
            "chat_messages_published",
            "Room messages accepted from clients on this node",
            registry=self.registry,
        )
        self.direct_messages = Counter(
            "chat_direct_messages", "Direct messages accepted on this node", registry=self.registry
        )
        self.frames_sent = Counter(
            "chat_frames_queued", "Frames queued to local connections", registry=self.registry
        )
        self.slow_consumers = Counter(
            "chat_slow_consumers_closed",
            "Connections closed because their send queue overflowed",
            registry=self.registry,
        )
        self.errors = Counter(
            "chat_errors", "Error answers sent to clients", ["code"], registry=self.registry
        )
        # Every code from the start, at 0: a rate sees the first error of a code (a series
        # born at 1 has no increase to show), and the dashboard's panel is never empty.
        for code in ErrorCode:
            self.errors.labels(code=code.value)
        self.rate_limited = Counter(
            "chat_rate_limited",
            "Requests refused for a budget: user (sends and DMs of one user on this node), "
            "recipient (DMs to one name, cluster-wide), joins (announced joins of one "
            "connection), address (announced joins from one client address), history (a "
            "connection's history reads), api_read (REST reads of a client address, but "
            "the API key's)",
            ["limit"],
            registry=self.registry,
        )
        for limit in ("user", "recipient", "joins", "address", "history", "api_read"):
            self.rate_limited.labels(limit=limit)  # a series from the start, at 0
        self.frames_refused = Counter(
            "chat_frames_refused",
            "Connections closed for a frame the server refuses before reading it: "
            "too_large (over --max-frame-bytes, 1009), protocol (unmasked, reserved "
            "bits, unknown opcode, out of sequence: 1002)",
            ["reason"],
            registry=self.registry,
        )
        for reason in FRAME_REFUSALS.values():
            self.frames_refused.labels(reason=reason)  # a series from the start, at 0
        self.handshakes_refused = Counter(
            "chat_handshakes_refused",
            "WebSocket handshakes refused, before the upgrade (origin, full, per_ip) or "
            "after it, before any welcome (unauthorized, invalid_name, name_timeout, ...)",
            ["reason"],
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "chat_connections_refused",
            "HTTP connections refused or cut before a request was read (per_ip, node_full, "
            "header_timeout, headers_too_large, request_line_too_long, bad_request)",
            ["reason"],
            registry=self.registry,
        )
        self.moderation_actions = Counter(
            "chat_moderation_actions",
            "Kicks, bans, unbans, deletes and disconnects done through this node, by "
            "room moderators (in-band) or operators (REST)",
            ["action", "actor"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "chat_publish_seconds",
            "Time for the broker to accept a message",
            registry=self.registry,
        )
        self.hook_requests = Counter(
            "chat_hook_requests",
            "Calls of the application's hooks (connect, join, publish) by result: allowed, "
            "refused (403), rewritten (publish: the application changed the text), "
            "unavailable (no answer in time, or not one the contract allows)",
            ["hook", "result"],
            registry=self.registry,
        )
        self.hook_seconds = Histogram(
            "chat_hook_seconds",
            "Time the application took to answer a hook (or to fail to)",
            ["hook"],
            registry=self.registry,
        )

        self.probe_rtt = Gauge(
            "chat_broker_probe_rtt_seconds",
            "Round trip of the last readiness probe through this node's subscription "
            "(NaN on the in-process broker or before the first one)",
            registry=self.registry,
        )
        self.events = EventMetrics(self.registry)

        self.rooms = Gauge(
            "chat_rooms",
            "Rooms with a connection on this node (each one subscribed at the broker)",
            registry=self.registry,
        )
        self.send_queue_bytes = Gauge(
            "chat_send_queue_bytes",
            "Bytes queued to this node's connections and not yet written to their sockets",
            registry=self.registry,
        )

        self.gc_pauses = Histogram(
            "chat_gc_pause_seconds",
            "Pauses of the garbage collector, by generation (2: a full collection; "
            "gateway/collector.py), while the node serves",
            ["generation"],
            buckets=GC_PAUSE_BUCKETS,
            registry=self.registry,
        )

    def watch(self, broker: BrokerState) -> None:
        """Export the broker's readiness, shards and reaps, read at each scrape."""
        self.registry.register(BrokerCollector(broker))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
