"""S1, S2 and S4: message scenarios, the same for every server.

Each connects its clients, sends for `warmup` seconds, measures for `duration`
seconds (deliveries, acks, latencies, CPU of every process), stops sending, waits
(bounded) for the last deliveries, and has the checker judge every receiver.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.checker import Verdict, percentile
from bench.fleet import Fleet, Sample
from bench.params import Spec

CONNECT_TIMEOUT = 30.0  # one client's handshake and join, once its turn came
LAG_WINDOWS = 2  # a pump also waits while 2 windows of its messages are not back


def cpu_delta(before: Sample, after: Sample) -> tuple[float, float, float]:
    """(server processes summed, Redis, load generator) CPU seconds between two samples.
    A server gone by `after` is counted up to its last sample."""
    servers = sum(after.servers.get(pid, cpu) - cpu for pid, cpu in before.servers.items())
    return servers, after.redis - before.redis, after.loadgen - before.loadgen


def per(total_seconds: float, count: float) -> float | None:
    """Microseconds per item; None when there were no items."""
    return total_seconds * 1e6 / count if count else None


def result(
    fleet: Fleet,
    verdict: Verdict,
    figures: dict[str, Any],
    before: Sample,
    after: Sample,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """A scenario's outcome as the orchestrator gets it (JSON)."""
    _, _, loadgen = cpu_delta(before, after)
    wall = max(after.at - before.at, 1e-9)
    problems = verdict.problems()
    if fleet.connect_failures:
        problems.append(
            f"{len(fleet.connect_failures)} connections failed, e.g. {fleet.connect_failures[0]}"
        )
    if fleet.unanswered():
        problems.append(f"{fleet.unanswered()} sends never answered")
    errors = [e for c in fleet.clients for e in c.errors]
    figures = {**figures, "loadgen_cpu_s": loadgen, "loadgen_core_share": loadgen / wall}
    if fleet.refused():  # `unavailable`: not accepted, so not expected either (not a loss)
        figures["sends_refused"] = fleet.refused()
    return {
        "figures": figures,
        "valid": not problems,
        "problems": problems,
        "verdict": {
            k: getattr(verdict, k)
            for k in ("received", "expected", "lost", "duplicates", "reordered", "unexpected")
        },
        "client_errors": errors[:5],
        "notes": notes or [],
    }


def latency_figures(fleet: Fleet) -> dict[str, float]:
    ordered = sorted(fleet.latencies_ns)
    return {"p50_ms": percentile(ordered, 0.50) / 1e6, "p99_ms": percentile(ordered, 0.99) / 1e6}


async def measure(fleet: Fleet, spec: Spec) -> tuple[Sample, Sample, Verdict]:
    """Warm up, measure `duration`, then drain and judge."""
    await asyncio.sleep(spec.sizes.warmup)
    before = fleet.open_window()
    await asyncio.sleep(spec.sizes.duration)
    after = fleet.close_window()
    verdict = await fleet.drain(spec.sizes.drain_timeout)
    return before, after, verdict


def flow_figures(fleet: Fleet, before: Sample, after: Sample, verdict: Verdict) -> dict[str, Any]:
    """What S1, S2 and S4 report alike."""
    servers, redis, _ = cpu_delta(before, after)
    wall = after.at - before.at
    return {
        "deliveries_per_s": fleet.window_deliveries / wall,
        "messages_per_s": fleet.window_acks / wall,
        "server_cpu_us_per_delivery": per(servers, fleet.window_deliveries),
        "server_cpu_us_per_message": per(servers, fleet.window_acks),
        "redis_cpu_us_per_message": per(redis, fleet.window_acks)
        if fleet.spec.redis_pids
        else None,
        "server_cpu_share": servers / wall,
        **latency_figures(fleet),
        "delivery_ratio": verdict.ratio,
    }


async def s1_saturation(spec: Spec) -> dict[str, Any]:
    """R receivers and a few senders in one room; each sender keeps a window in flight."""
    z = spec.sizes
    fleet = Fleet(spec)
    members = [fleet.add("s1") for _ in range(z.s1_receivers + z.s1_senders)]
    connect_s = await fleet.connect(members, list(spec.nodes), CONNECT_TIMEOUT)
    for client in members[z.s1_receivers :]:
        fleet.start_pump([fleet.make_sender(client)], z.s1_window, LAG_WINDOWS * z.s1_window)
    before, after, verdict = await measure(fleet, spec)
    figures = flow_figures(fleet, before, after, verdict) | {"connect_s": connect_s}
    notes = [f"{len(members)} members (the senders are members too) on {len(spec.nodes)} nodes"]
    return result(fleet, verdict, figures, before, after, notes)


async def s2_fixed(spec: Spec) -> dict[str, Any]:
    """R receivers in one room; a fixed total rate of messages from a few senders."""
    z = spec.sizes
    fleet = Fleet(spec)
    members = [fleet.add("s2") for _ in range(z.s2_receivers + z.s2_senders)]
    await fleet.connect(members, list(spec.nodes), CONNECT_TIMEOUT)
    senders = [fleet.make_sender(c) for c in members[z.s2_receivers :]]
    loop = asyncio.get_running_loop()
    until = loop.time() + z.warmup + z.duration
    pacing = asyncio.create_task(fleet.paced(senders, z.s2_rate, until))
    try:
        before, after, verdict = await measure(fleet, spec)
    finally:
        fleet.running = False
        await pacing
    figures = flow_figures(fleet, before, after, verdict)
    return result(fleet, verdict, figures, before, after)


async def s4_small_rooms(spec: Spec) -> dict[str, Any]:
    """Many rooms of a few members, spread over the nodes; each room's first member sends,
    the rooms in turn, `s4_window` messages in flight over all of them."""
    z = spec.sizes
    fleet = Fleet(spec)
    members = [fleet.add(f"r{r}") for r in range(z.s4_rooms) for _ in range(z.s4_members)]
    connect_s = await fleet.connect(members, list(spec.nodes), CONNECT_TIMEOUT)
    senders = [fleet.make_sender(members[r * z.s4_members]) for r in range(z.s4_rooms)]
    fleet.start_pump(senders, z.s4_window, LAG_WINDOWS * z.s4_window)
    before, after, verdict = await measure(fleet, spec)
    figures = flow_figures(fleet, before, after, verdict) | {"connect_s": connect_s}
    notes = [
        f"{z.s4_rooms} rooms x {z.s4_members} members, each room's members spread "
        f"over {len(spec.nodes)} nodes"
    ]
    return result(fleet, verdict, figures, before, after, notes)
