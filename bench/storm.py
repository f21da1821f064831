"""S3 and S5: connection scenarios, each also at scale.

S3 opens many idle connections to one node as fast as it accepts them (a bounded number
of handshakes in flight) and reads what they cost: RSS and CPU per connection; S3 at
scale does the same with `s3_big_connections`, and should cost as much per connection.
S5 kills a node under its clients (SIGKILL, no warning) and times their resume on
another node, while messages keep coming to their rooms; not one may be lost or
doubled. S5 at scale does it with `s5_big_clients`, and S5 through a drain stops the
node with SIGTERM instead (it closes its connections with 1001 over
`s5_drain_seconds`), with `s5_drain_clients`.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from typing import Any

from bench.chatclients import ChatClient, GatewayClient
from bench.fleet import Fleet
from bench.params import Spec
from bench.procstat import rss_kib
from bench.scenarios import CONNECT_TIMEOUT, cpu_delta, per, result

SETTLE = 1.0  # seconds after the last connection before RSS is read
RESUME_TRIES = 5
FIRST_MESSAGE_TIMEOUT = 20.0  # most S5 waits for every client to have an offset


async def s3_idle(spec: Spec) -> dict[str, Any]:
    """S3: `s3_connections` idle connections to one node."""
    return await _idle(spec, spec.sizes.s3_connections)


async def s3_big(spec: Spec) -> dict[str, Any]:
    """S3 at scale: `s3_big_connections` idle connections to one node."""
    return await _idle(spec, spec.sizes.s3_big_connections)


async def _idle(spec: Spec, count: int) -> dict[str, Any]:
    """`count` idle connections to node 0, in rooms of `s3_room_size`; then one message
    per room checks that every one of them is alive."""
    z = spec.sizes
    fleet = Fleet(spec)
    node = spec.nodes[0]
    clients = [fleet.add(f"idle{i // z.s3_room_size}") for i in range(count)]
    rss_before = rss_kib(node.pid) or 0
    before = fleet.sample()
    connect_s = await fleet.connect(clients, [node], CONNECT_TIMEOUT)
    await asyncio.sleep(SETTLE)
    after = fleet.sample()
    rss_after = rss_kib(node.pid) or 0
    for members in fleet.rooms.values():
        fleet.send_one(fleet.make_sender(fleet.clients[members[0]]))
    verdict = await fleet.drain(z.drain_timeout)
    connected = count - len(fleet.connect_failures)
    servers, redis, _ = cpu_delta(before, after)
    figures = {
        "connections_per_s": connected / connect_s if connect_s else None,
        "rss_kib_per_connection": (rss_after - rss_before) / connected if connected else None,
        "server_cpu_us_per_connection": per(servers, connected),
        "redis_cpu_us_per_connection": per(redis, connected) if spec.redis_pids else None,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "delivery_ratio": verdict.ratio,
    }
    notes = [
        f"{connected} connections to one node in rooms of {z.s3_room_size}; CPU from "
        f"the first handshake to {SETTLE:.0f}s after the last"
    ]
    return result(fleet, verdict, figures, before, after, notes)


async def _resume(
    client: ChatClient, host: str, port: int, gate: asyncio.Semaphore, deadline: float
) -> tuple[float | None, bool, str | None]:
    """Wait for `client`'s connection to drop, then reconnect (with its session and last
    offset) to host:port; (when it resumed, recovered, last error)."""
    if not client.ever_opened:
        return None, False, "it never connected"
    remaining = deadline - time.monotonic()
    try:
        async with asyncio.timeout(max(remaining, 0.1)):
            await client.closed
    except TimeoutError:
        return None, False, "its connection never dropped"
    error = None
    for attempt in range(RESUME_TRIES):
        async with gate:
            try:
                recovered = await client.open(host, port, within=CONNECT_TIMEOUT)
                return time.monotonic(), recovered, None
            except Exception as exc:  # refused, reset, timed out: tried again
                error = f"{type(exc).__name__}: {exc}"[:200]
        await asyncio.sleep(0.1 * 2**attempt)
    return None, False, error


def resume_deadline(clients: int) -> float:
    """The most seconds S5 waits, from the kill, for `clients` to have resumed."""
    return 60.0 + clients / 50


async def s5_storm(spec: Spec) -> dict[str, Any]:
    """S5: `s5_clients` on node A, which is killed."""
    return await _storm(spec, spec.sizes.s5_clients, signal.SIGKILL)


async def s5_big(spec: Spec) -> dict[str, Any]:
    """S5 at scale: `s5_big_clients` on node A, which is killed."""
    return await _storm(spec, spec.sizes.s5_big_clients, signal.SIGKILL)


async def s5_drain(spec: Spec) -> dict[str, Any]:
    """S5 through a drain: `s5_drain_clients` on node A, which is stopped with SIGTERM (the
    orchestrator started it with `--drain-seconds s5_drain_seconds`)."""
    return await _storm(spec, spec.sizes.s5_drain_clients, signal.SIGTERM)


async def _storm(spec: Spec, count: int, stop: signal.Signals) -> dict[str, Any]:
    """`count` clients on node A, one sender per room on node B; A is sent `stop`; every
    client resumes on B with `session` and `since`; the senders go on throughout."""
    z = spec.sizes
    if spec.peer != "gateway" or len(spec.nodes) < 2 or not spec.redis_pids:
        return {"skipped": "S5 needs the gateway on Redis with 2 nodes or more"}
    node_a, node_b = spec.nodes[0], spec.nodes[1]
    fleet = Fleet(spec, track_offsets=True)
    clients = [fleet.add(f"s{i // z.s5_room_size}") for i in range(count)]
    resumers = [c for c in clients if isinstance(c, GatewayClient)]
    rooms = math.ceil(count / z.s5_room_size)
    sender_clients = [fleet.add(f"s{r}") for r in range(rooms)]
    await fleet.connect(clients, [node_a], CONNECT_TIMEOUT)
    await fleet.connect(sender_clients, [node_b], CONNECT_TIMEOUT)
    senders = [fleet.make_sender(c) for c in sender_clients]
    loop = asyncio.get_running_loop()
    pacing = asyncio.create_task(fleet.paced(senders, z.s5_rate, loop.time() + 600))
    problems: list[str] = []
    try:
        waited = time.monotonic() + FIRST_MESSAGE_TIMEOUT
        while any(c.last_offset is None for c in resumers if c.is_open):
            if time.monotonic() > waited:
                problems.append("some clients never got a first message")
                break
            await asyncio.sleep(0.05)
        before = fleet.sample()
        stopped = time.monotonic()
        os.kill(node_a.pid, stop)
        gate = asyncio.Semaphore(z.connect_concurrency)
        deadline = stopped + resume_deadline(count)
        outcomes = await asyncio.gather(
            *(_resume(c, node_b.host, node_b.port, gate, deadline) for c in clients)
        )
        after = fleet.sample()
        await asyncio.sleep(z.s5_after)
    finally:
        fleet.running = False
        await pacing
    verdict = await fleet.drain(z.drain_timeout)
    resumed = [at - stopped for at, _, _ in outcomes if at is not None]
    not_recovered = sum(1 for at, rec, _ in outcomes if at is not None and not rec)
    failed = [err for at, _, err in outcomes if at is None]
    if failed:
        problems.append(f"{len(failed)} clients did not resume, e.g. {failed[0]}")
    if not_recovered:
        problems.append(f"{not_recovered} resumes answered recovered=false")
    _, redis, _ = cpu_delta(before, after)  # node B's alone: a draining A is alive a while
    servers = after.servers.get(node_b.pid, 0.0) - before.servers.get(node_b.pid, 0.0)
    how = "killed" if stop == signal.SIGKILL else f"drained over {z.s5_drain_seconds:g}s"
    figures = {
        "resume_all_s": max(resumed) if resumed and not failed else None,
        "resume_p50_s": sorted(resumed)[len(resumed) // 2] if resumed else None,
        "messages_lost": verdict.lost,
        "server_cpu_us_per_resume": per(servers, len(resumed)),
        "redis_cpu_us_per_resume": per(redis, len(resumed)),
        "delivery_ratio": verdict.ratio,
    }
    out = result(
        fleet,
        verdict,
        figures,
        before,
        after,
        [
            f"{count} clients in {rooms} rooms on node A ({how}), their senders on node B "
            f"at {z.s5_rate:g} messages/s; server CPU is node B's, from the "
            f"{stop.name} to the last resume"
        ],
    )
    out["problems"] = problems + out["problems"]
    out["valid"] = not out["problems"]
    return out
