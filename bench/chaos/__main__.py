"""`make chaos`: a randomized fault campaign against three gateway nodes, with a checker.

    .venv/bin/python -m bench.chaos [--seconds 120] [--seed N] [--redis single|cluster]

The flags default to CHAOS_SECONDS, CHAOS_SEED (random when unset; printed, so a run can
be repeated) and CHAOS_REDIS. The last line is always
`chaos: F faults, A acked, L lost, D duplicated, R reordered, presence converged|diverged;
events: E delivered, P repeated, L lost, D duplicated, R reordered, U unknown, N presence`
(the events the nodes posted to the campaign's application); the exit status is 1 on any
violation (each printed above it with the faults around it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.chaos.campaign import CampaignConfig, run_campaign
from bench.chaos.nemesis import CLUSTER_FAULTS, SINGLE_FAULTS


def parse(argv: Sequence[str] | None) -> CampaignConfig:
    env = os.environ
    parser = argparse.ArgumentParser(prog="bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(env.get("CHAOS_SECONDS", 120)),
        help="seconds of faults before the quiet period [CHAOS_SECONDS]",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=int(env.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 32)),
        help="seed of every random choice [CHAOS_SEED]",
    )
    parser.add_argument(
        "--redis",
        choices=("single", "cluster"),
        default=env.get("CHAOS_REDIS", "single"),
        help="one redis-server, or a Redis Cluster with replicas [CHAOS_REDIS]",
    )
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument(
        "--readers",
        type=int,
        default=5,
        help="of the clients, those that only listen (20 s heartbeat, as chat)",
    )
    parser.add_argument(
        "--max-pause", type=float, default=20.0, help="the longest SIGSTOP of a node, in seconds"
    )
    parser.add_argument(
        "--faults",
        help="a comma-separated subset of: " + ", ".join(sorted({*SINGLE_FAULTS, *CLUSTER_FAULTS})),
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="each fault healed before the next (default: they overlap)",
    )
    parser.add_argument(
        "--failover-first",
        action="store_true",
        help="a killed primary comes back only after its replica took over "
        "(default: half the time at once, racing the failover)",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the processes' logs here")
    args = parser.parse_args(argv)
    faults = None
    if args.faults is not None:
        faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
        allowed = SINGLE_FAULTS if args.redis == "single" else CLUSTER_FAULTS
        unknown = [f for f in faults if f not in allowed]
        if unknown:
            parser.error(f"--faults: {', '.join(unknown)} not among {', '.join(allowed)}")
    return CampaignConfig(
        seconds=args.seconds,
        seed=args.seed,
        redis=args.redis,
        clients=args.clients,
        rooms=args.rooms,
        readers=args.readers,
        overlap=not args.sequential,
        failover_first=args.failover_first,
        max_pause=args.max_pause,
        faults=faults,
        keep=args.keep_logs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse(argv)
    verdict = asyncio.run(run_campaign(config, say=lambda line: print(line, flush=True)))
    print(verdict.line(), flush=True)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
