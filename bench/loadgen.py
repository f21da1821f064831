"""The load generator: one process per scenario run, on a core of its own.

`python -m bench.run` starts it with a Spec (bench/params.py) as JSON on stdin; it pins
itself to the cores the spec names, runs the scenario with raw WebSocket clients
(tooling/wsclient.py) on uvloop where it is installed (it halves what a client costs the
load generator, mostly its reads) or asyncio's own loop, and writes the outcome as one
JSON line on stdout. Its connections
close when it exits. Progress and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.params import Spec
from bench.scenarios import s1_saturation, s2_fixed, s4_small_rooms
from bench.storm import s3_idle, s5_storm

RUNNERS: dict[str, Callable[[Spec], Awaitable[dict[str, Any]]]] = {
    "s1": s1_saturation,
    "s2": s2_fixed,
    "s3": s3_idle,
    "s4": s4_small_rooms,
    "s5": s5_storm,
}
RESULT_PREFIX = "RESULT "


def time_cap(spec: Spec) -> float:
    """The most one run may take, whatever the server does: connecting, sending, drain."""
    z = spec.sizes
    biggest = max(z.s1_receivers, z.s3_connections, z.s4_rooms * z.s4_members, z.s5_clients)
    return 60.0 + z.warmup + z.duration + 2 * z.drain_timeout + biggest / 50


async def run(spec: Spec) -> dict[str, Any]:
    """Run `spec`'s scenario within its time cap."""
    started = time.monotonic()
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
