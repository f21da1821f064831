"""The bench's sizes and the spec one load-generator run is given.

Every size is a flag of `python -m bench.run` (--s1-receivers, --duration, ...); the
defaults keep a whole `make bench` (every scenario, every peer, 3 repetitions) under 15
minutes on a 2-core machine, and `--quick` swaps them for a smoke run of seconds.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

SCENARIOS = ("s1", "s2", "s3", "s3big", "s4", "s5", "s5big", "s5drain")
TITLES = {
    "s1": "S1 saturation: one room, senders with a window of messages in flight",
    "s2": "S2 fixed load: one room, paced messages",
    "s3": "S3 idle connections to one node",  # the titles are formatted with the Sizes
    "s3big": "S3 at scale: {s3_big_connections:,} idle connections to one node",
    "s4": "S4 many small rooms",
    "s5": "S5 reconnect storm: node A killed, its clients resume on node B",
    "s5big": "S5 at scale: node A killed under {s5_big_clients:,} clients",
    "s5drain": "S5 through a drain: node A stopped with SIGTERM under {s5_drain_clients:,} "
    "clients, drained over {s5_drain_seconds:g} s",
}
NO_RESUME = (
    "the peers have no resume from an offset (Socket.IO's connection "
    "state recovery needs another adapter), so S5 runs on the gateway only"
)
AT_SCALE = "the peers are left out at this size, to keep make bench short: S3 compares them"
GATEWAY_ONLY = {"s3big": AT_SCALE, "s5": NO_RESUME, "s5big": NO_RESUME, "s5drain": NO_RESUME}
# the scenarios at scale (and the drain), run in the first --big-repetitions repetitions
# only, and what each is compared with (the gateway's run of it in the same repetition)
SCALE_BASE = {"s3big": "s3", "s5big": "s5", "s5drain": "s5"}
SHORT = {"s3": "S3", "s5": "S5"}  # in a column's head
STORMS = ("s5", "s5big", "s5drain")  # node A (node 0) is killed or drained on purpose


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does. Times are seconds."""

    duration: float = 4.0  # the measured interval of S1, S2 and S4
    warmup: float = 1.0  # load before the measured interval (not counted)
    text_size: int = 64  # characters in each message text
    connect_concurrency: int = 100  # handshakes in flight at once
    s1_receivers: int = 400
    s1_senders: int = 4
    s1_window: int = 4  # messages each sender keeps in flight (sent, not acked)
    s2_receivers: int = 200
    s2_senders: int = 4
    s2_rate: float = 100.0  # messages per second, all senders together
    s3_connections: int = 2000
    s3_room_size: int = 20  # the idle connections sit in rooms of this many
    s4_rooms: int = 1000
    s4_members: int = 5
    s4_window: int = 100  # messages in flight over all the rooms (each room's first member
    # sends, the rooms in turn)
    s5_clients: int = 2000
    s5_room_size: int = 20
    s5_rate: float = 200.0  # messages per second over all the rooms, sent from node B
    s5_after: float = 1.0  # seconds of sending after the last client resumed
    s3_big_connections: int = 18000  # S3 at scale (one load-generator process holds them:
    # mind its file descriptors, `ulimit -n`)
    s5_big_clients: int = 10000  # S5 at scale; the same rooms of 20, the same rate
    s5_drain_clients: int = 2000  # S5 through a drain (10,000 adds about 2 minutes)
    s5_drain_seconds: float = 10.0  # node A's --drain-seconds there (the gateway's default)
    drain_timeout: float = 20.0  # most a run waits for the last deliveries after sending

    def describe(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Sizes(
    duration=1.0,
    warmup=0.3,
    connect_concurrency=50,
    s1_receivers=40,
    s1_senders=2,
    s2_receivers=20,
    s2_senders=2,
    s2_rate=50.0,
    s3_connections=100,
    s3_room_size=10,
    s4_rooms=30,
    s4_members=3,
    s4_window=10,
    s5_clients=60,
    s5_room_size=10,
    s5_rate=60.0,
    s5_after=0.3,
    s3_big_connections=300,
    s5_big_clients=150,
    s5_drain_clients=60,
    s5_drain_seconds=0.5,
    drain_timeout=10.0,
)


def add_size_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Sizes field (default: unset, so --quick can tell what was given)."""
    for f in fields(Sizes):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=float if f.type in ("float", float) else int,
            default=None,
            help=f"(default {f.default}, quick {getattr(QUICK, f.name)})",
        )


def sizes_from(args: argparse.Namespace) -> Sizes:
    """Defaults (or QUICK with --quick), then every size flag that was given."""
    base = QUICK if args.quick else Sizes()
    given = {f.name: getattr(args, f.name) for f in fields(Sizes)}
    return replace(base, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class Node:
    """One server process the load generator talks to."""

    host: str
    port: int
    pid: int


@dataclass(frozen=True)
class Spec:
    """What one load-generator process runs: one scenario against one started cluster."""

    scenario: str
    peer: str
    sizes: Sizes
    nodes: tuple[Node, ...]
    redis_pids: tuple[int, ...]  # the Redis processes (none on the in-process broker)
    cores: tuple[int, ...] | None  # the load generator's own cores (None: not pinned)
    event_loop: str = "asyncio"  # the load generator's: "asyncio" or "uvloop"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = [asdict(n) for n in self.nodes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        return cls(
            scenario=data["scenario"],
            peer=data["peer"],
            sizes=Sizes(**data["sizes"]),
            nodes=tuple(Node(**n) for n in data["nodes"]),
            redis_pids=tuple(data["redis_pids"]),
            cores=tuple(data["cores"]) if data["cores"] is not None else None,
            event_loop=data.get("event_loop", "asyncio"),
        )
