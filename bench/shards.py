"""The gateway on one Redis against a Redis Cluster of three primaries, in one run.

    .venv/bin/python -m bench.shards [--quick] [--repetitions N] [--scenarios s1,s4]
        [--brokers redis,cluster]

Runs S1 (saturation, one room) and S4 (many small rooms) of `make bench` on each broker,
repetitions interleaved, and prints the medians: messages (or deliveries) per second
and Redis CPU per message, summed over every Redis process. The cluster itself is
tooling/redis.py's `RedisCluster`, started by `bench.cluster.Cluster` (`shards` > 0).

What the application's backend costs (bench/backend_peer.py, an application answering
at once): `--scenarios s3,s2 --brokers redis,redis+hooks,redis+events`.

What an ack that waits for a replica costs: `--scenarios s2 --brokers
redis+replica-nowait,redis+replica,cluster+replica-nowait,cluster+replica` (each Redis,
or each shard, with a replica; "-nowait" runs the gateway with --redis-ack-replicas 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


FIGURES = {
    "s1": ("deliveries_per_s", "server_cpu_us_per_delivery", "redis_cpu_us_per_message"),
    "s2": ("p50_ms", "p99_ms", "server_cpu_us_per_message", "redis_cpu_us_per_message"),
    "s4": ("messages_per_s", "server_cpu_us_per_message", "redis_cpu_us_per_message"),
    "s3": ("connections_per_s", "server_cpu_us_per_connection", "redis_cpu_us_per_connection"),
}
# Figures of the application (bench/backend_peer.py) in "+hooks"/"+events" variants.
BACKEND_FIGURES = ("backend_lag_p50_ms", "backend_lag_p99_ms", "backend_events")


def main(argv: list[str] | None = None) -> None:
    from bench.run import one_run, parse_args

    parser = argparse.ArgumentParser(prog="bench.shards", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--scenarios", default="s1,s4", help="of: " + ",".join(FIGURES))
    parser.add_argument("--brokers", default="redis,cluster")
    own = parser.parse_args(argv)
    scenarios, brokers = own.scenarios.split(","), own.brokers.split(",")
    args = parse_args(["--peers", "gateway", *(["--quick"] if own.quick else [])])
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rep in range(own.repetitions):
        for scenario in scenarios:
            for broker in brokers:  # interleaved: drift hits all alike
                outcome = one_run(args, "gateway", scenario, broker, None)
                runs.setdefault((scenario, broker), []).append(outcome)
                shown = {
                    k: outcome["figures"].get(k)
                    for k in FIGURES[scenario] + BACKEND_FIGURES
                    if k in outcome["figures"]
                }
                print(f"rep {rep + 1} {scenario} {broker}: {json.dumps(shown)} "
                      f"valid={outcome.get('valid')}", flush=True)  # fmt: skip
    lines = ["| scenario | figure | " + " | ".join(brokers) + f" | {brokers[-1]} / {brokers[0]} |",
             "|---|---|" + "---|" * (len(brokers) + 1)]  # fmt: skip
    for scenario in scenarios:
        for name in FIGURES[scenario] + BACKEND_FIGURES:
            if not any(name in r.get("figures", {}) for v in runs.values() for r in v):
                continue
            medians = []
            for broker in brokers:
                values = [
                    r["figures"][name]
                    for r in runs[(scenario, broker)]
                    if r.get("figures", {}).get(name) is not None
                ]
                medians.append(statistics.median(values) if values else float("nan"))
            ratio = medians[-1] / medians[0] if medians[0] else float("nan")
            cells = " | ".join(f"{m:,.2f}" for m in medians)
            lines.append(f"| {scenario.upper()} | {name} | {cells} | {ratio:.2f} |")
    invalid = [k for k, v in runs.items() if not all(r.get("valid", False) for r in v)]
    lines.append(f"\n{own.repetitions} repetitions, medians; invalid runs: {invalid or 'none'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shards.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if invalid:
        sys.exit(1)


if __name__ == "__main__":
    main()
