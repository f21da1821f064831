"""One node's status as the operator's console shows it (GET /api/nodes): who it is,
whether it is ready, and the few numbers an operator checks first. On Redis each
heartbeat carries it (gateway/broker/redis/liveness.py), so every node sees them all.
"""

from __future__ import annotations

import socket
import time

from gateway.broker.base import Broker, NodeStatus
from gateway.config import Settings
from gateway.metrics import Metrics

ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})
# The counters the console shows per node (totals since the node started; the page
# turns them into rates between two refreshes).
COUNTED = (
    ("messages", "chat_messages_published"),
    ("errors", "chat_errors"),
    ("slow_consumers", "chat_slow_consumers_closed"),
    ("rate_limited", "chat_rate_limited"),
    ("handshakes_refused", "chat_handshakes_refused"),
)


def node_address(host: str, port: int) -> str:
    """Where the node listens, `host:port`; the machine's name for an any-address."""
    shown = socket.gethostname() if host in ANY_ADDRESS else host
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


def node_status(
    settings: Settings, broker: Broker, metrics: Metrics, started: int, connections: int
) -> NodeStatus:
    """The status now of the node of `settings` (`started` epoch ms, with `connections`
    open), a JSON object."""
    ready = broker.is_ready()
    totals = dict.fromkeys((name for _, name in COUNTED), 0.0)
    for family in metrics.registry.collect():
        if family.name in totals:
            totals[family.name] = sum(s.value for s in family.samples if s.name.endswith("_total"))
    return {
        "id": settings.node_id,
        "address": node_address(settings.host, settings.port),
        "started": started,
        "seen": int(time.time() * 1000),
        "ready": ready,
        "why": broker.unready_reason() if not ready else (broker.degraded() or ""),
        "probe_rtt": broker.probe_rtt,
        "connections": connections,
        "numbers": {label: int(totals[name]) for label, name in COUNTED},
    }
