"""The load generator: one process per scenario run, on a core of its own.

`python -m bench.run` starts it with a Spec (bench/params.py) as JSON on stdin; it pins
itself to the cores the spec names, runs the scenario with raw WebSocket clients
(tooling/wsclient.py) on uvloop where it is installed (it halves what a client costs the
load generator, mostly its reads) or asyncio's own loop, and writes the outcome as one
JSON line on stdout. Its connections
close when it exits. Progress and errors go to stderr. It holds every client socket of
its scenario (18,000 in S3 at scale): it raises its open-files limit that far, up to the
hard limit, or fails at once saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.params import STORMS, Spec
from bench.scenarios import s1_saturation, s2_fixed, s4_small_rooms
from bench.storm import resume_deadline, s3_big, s3_idle, s5_big, s5_drain, s5_storm

RUNNERS: dict[str, Callable[[Spec], Awaitable[dict[str, Any]]]] = {
    "s1": s1_saturation,
    "s2": s2_fixed,
    "s3": s3_idle,
    "s3big": s3_big,
    "s4": s4_small_rooms,
    "s5": s5_storm,
    "s5big": s5_big,
    "s5drain": s5_drain,
}
RESULT_PREFIX = "RESULT "
SPARE_FDS = 200  # beside the clients' sockets: Python's own files, /proc reads, the loop


def sockets(spec: Spec) -> int:
    """How many client sockets `spec`'s scenario holds at once, at most."""
    z = spec.sizes
    s5 = {"s5": z.s5_clients, "s5big": z.s5_big_clients, "s5drain": z.s5_drain_clients}
    if spec.scenario in s5:
        clients = s5[spec.scenario]
        return clients + -(-clients // z.s5_room_size)  # the senders, one per room
    return {
        "s1": z.s1_receivers + z.s1_senders,
        "s2": z.s2_receivers + z.s2_senders,
        "s3": z.s3_connections,
        "s3big": z.s3_big_connections,
        "s4": z.s4_rooms * z.s4_members,
    }[spec.scenario]


def time_cap(spec: Spec) -> float:
    """The most one run may take, whatever the server does: connecting, sending, drain."""
    z = spec.sizes
    clients = sockets(spec)
    storm = resume_deadline(clients) + z.s5_after if spec.scenario in STORMS else 0.0
    return 60.0 + z.warmup + z.duration + 2 * z.drain_timeout + clients / 50 + storm


def enough_descriptors(needed: int) -> str | None:
    """Raise this process's soft limit on open files as far as `needed` asks (the hard
    limit bounds it); why it cannot hold that many sockets, or None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + SPARE_FDS
    if want > soft and soft != resource.RLIM_INFINITY:
        limit = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        soft = limit
    if soft != resource.RLIM_INFINITY and want > soft:
        return (
            f"the load generator needs {needed} sockets and {SPARE_FDS} more descriptors, "
            f"but may open {soft} (ulimit -n): make the scenario smaller"
        )
    return None


async def run(spec: Spec) -> dict[str, Any]:
    """Run `spec`'s scenario within its time cap."""
    started = time.monotonic()
    short = enough_descriptors(sockets(spec))
    if short is not None:
        return {"valid": False, "problems": [short], "figures": {}, "seconds": 0.0}
    try:
        async with asyncio.timeout(time_cap(spec)):
            outcome = await RUNNERS[spec.scenario](spec)
    except TimeoutError:
        outcome = {
            "valid": False,
            "problems": [f"timed out after {time_cap(spec):.0f}s"],
            "figures": {},
        }
    outcome["seconds"] = time.monotonic() - started
    return outcome


def main() -> int:
    spec = Spec.from_json(json.loads(sys.stdin.read()))
    if spec.cores is not None:
        os.sched_setaffinity(0, spec.cores)
    if spec.event_loop == "uvloop":
        import uvloop

        outcome = uvloop.run(run(spec))
    else:
        outcome = asyncio.run(run(spec))
    sys.stdout.write(RESULT_PREFIX + json.dumps(outcome) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
