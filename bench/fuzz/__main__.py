"""A bounded fuzz run against a live gateway node (issue 6, hardening).

    .venv/bin/python -m bench.fuzz                       # the in-process broker
    .venv/bin/python -m bench.fuzz --redis-url redis://127.0.0.1:6390/0 --seed 7

Prints the run's figures; exits 1 when the run found something (see bench/fuzz/__init__.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench.fuzz.config import FuzzConfig
from bench.fuzz.report import table
from bench.fuzz.runner import run_fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seed", type=int, default=FuzzConfig.seed)
    parser.add_argument("--redis-url", help="fuzz a node on this Redis (default: in-process)")
    parser.add_argument("--time-cap", type=float, default=FuzzConfig.time_cap)
    parser.add_argument("--rounds", type=int, default=FuzzConfig.rounds)
    parser.add_argument("--node-log", type=Path, help="write the node's whole log here")
    args = parser.parse_args(argv)
    config = FuzzConfig(
        seed=args.seed, redis_url=args.redis_url, time_cap=args.time_cap, rounds=args.rounds
    )
    report = asyncio.run(run_fuzz(config, args.node_log))
    print(table(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
