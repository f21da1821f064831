"""`make bench`: the gateway against python-socketio (and Node socket.io), same machine.

For each repetition, each scenario, each server in turn (gateway, socketio, node,
gateway, ...): start a Redis of its own and N nodes on the servers' core, run one
load-generator process on the other core (bench/loadgen.py), stop everything (one run:
bench/single_run.py). Then a markdown table (printed, and written beside the JSON) with
medians, ranges and ratios.

    .venv/bin/python -m bench.run                  # everything, ~12 minutes on 2 cores
    .venv/bin/python -m bench.run --quick          # a smoke run of a few seconds a scenario
    .venv/bin/python -m bench.run --peers gateway --scenarios s1,s3 --s1-receivers 1000
    .venv/bin/python -m bench.run --peers gateway --scenarios s3,s3big --repetitions 1

The scenarios at scale (S3 with 18,000 connections, S5 with 10,000 clients) and S5
through a drain run in the first repetition only (--big-repetitions), on the gateway alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from bench.cluster import PEERS, ROOT, node_modules
from bench.params import (
    GATEWAY_ONLY,
    SCALE_BASE,
    SCENARIOS,
    add_size_flags,
    sizes_from,
)
from bench.procstat import core_plan, machine
from bench.report import PEER_NAMES, markdown, summarize
from bench.single_run import one_run

__all__ = ["bench", "main", "one_run", "parse_args"]  # bench/shards.py imports one_run here

RESULTS = ROOT / "bench" / "results"
PEER_NOTE = (
    "the peers keep no history and no presence: per message the gateway also appends to the "
    "room's Redis stream (one script: XADD + PUBLISH), per join it also claims the name and "
    "announces presence; python-socketio runs with async_handlers=False (by default a "
    "client's messages can overtake each other: the bench saw it)"
)
GATEWAY_FLAGS = (
    "--rate-per-second 0 --max-connections-per-ip 0 --max-connections 0 "
    "--join-rate-per-ip 0 --join-rate 0 --dm-recipient-rate 0 "
    "(the rate limits, the join and DM budgets and both connection limits off for the "
    "bench's clients, which all come from one address)"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--peers", default=",".join(PEERS), help="default: %(default)s")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="default: %(default)s")
    parser.add_argument("--repetitions", type=int, default=None, help="default 3, quick 1")
    parser.add_argument(
        "--big-repetitions",
        type=int,
        default=1,
        help="repetitions that also run the scenarios at scale (%%(default)s: the first)",
    )
    parser.add_argument("--nodes", type=int, default=2, help="nodes per server (default 2)")
    parser.add_argument(
        "--broker",
        choices=("redis", "memory", "cluster"),
        default=None,
        help="the gateway's broker (default redis if redis-server is here; "
        "memory: one node on the in-process broker; cluster: a Redis Cluster of 3 "
        "primaries; the peers skipped on both)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--markdown", type=Path, default=None, help="default: the JSON path with .md"
    )
    parser.add_argument(
        "--node-cache",
        type=Path,
        default=ROOT / "bench" / ".node",
        help="where npm installs the Node peer's packages",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default=None,
        help="the load generator's event loop (default uvloop if installed)",
    )
    add_size_flags(parser)
    args = parser.parse_args(argv)
    if args.loop is None:
        args.loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if args.repetitions is None:
        args.repetitions = 1 if args.quick else 3
    return args


def available_peers(
    args: argparse.Namespace, broker: str
) -> tuple[list[str], list[str], Path | None]:
    """(peers to run, why the others were skipped, the Node peer's node_modules)."""
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; expected some of {', '.join(PEERS)}")
    peers: list[str] = []
    skipped: list[str] = []
    modules: Path | None = None
    for peer in wanted:
        if peer != "gateway" and broker != "redis":
            skipped.append(f"{PEER_NAMES[peer]} skipped: it needs one redis-server")
        elif peer == "socketio" and importlib.util.find_spec("socketio") is None:
            skipped.append("python-socketio skipped: not installed (pip install -e '.[bench]')")
        elif peer == "node" and isinstance(found := node_modules(args.node_cache), str):
            skipped.append(f"Node socket.io skipped: {found}")
        else:
            peers.append(peer)
            if peer == "node" and isinstance(found, Path):
                modules = found
    return peers, skipped, modules


def _line(rep: int, peer: str, scenario: str, outcome: dict[str, Any]) -> str:
    if "skipped" in outcome:
        return f"rep {rep + 1} {scenario} {peer}: skipped ({outcome['skipped']})"
    figures = outcome.get("figures", {})
    shown = ", ".join(f"{k}={v:.4g}" for k, v in figures.items() if isinstance(v, int | float))
    verdict = "valid" if outcome.get("valid") else "INVALID " + "; ".join(outcome["problems"])
    return f"rep {rep + 1} {scenario} {peer} ({outcome.get('seconds', 0):.0f}s): {verdict}; {shown}"


def _stop_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through every Cluster's stop()


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 1 when any run was INVALID, 130 when interrupted."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args(argv)
    try:
        return bench(args)
    except KeyboardInterrupt:
        print("\ninterrupted: every process the bench started is stopped", file=sys.stderr)
        return 130


def bench(args: argparse.Namespace) -> int:
    """Every repetition, scenario and server; then the report."""
    started, host = time.monotonic(), machine()
    broker = args.broker or ("redis" if shutil.which("redis-server") else "memory")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if any(s not in SCENARIOS for s in scenarios):
        raise SystemExit(f"unknown scenarios in {scenarios}; expected some of {SCENARIOS}")
    peers, notes, modules = available_peers(args, broker)
    if len(peers) > 1:
        notes.append(PEER_NOTE)
    plan = core_plan()
    pinning = (
        f"servers and Redis on cores {list(plan[0])}, the load generator on core {plan[1][0]}"
        if plan
        else "one core: nothing pinned"
    )
    print(f"chat-gateway bench: {', '.join(peers)}; {', '.join(scenarios)}; {pinning}")
    print(f"gateway nodes: {GATEWAY_FLAGS}; the load generator on {args.loop}")
    for note in notes:
        print(note)
    runs: list[dict[str, Any]] = []
    for rep in range(args.repetitions):
        for scenario in scenarios:
            if scenario in SCALE_BASE and rep >= args.big_repetitions:
                continue
            for peer in peers:
                if scenario in GATEWAY_ONLY and peer != "gateway":
                    outcome: dict[str, Any] = {"skipped": GATEWAY_ONLY[scenario]}
                else:
                    outcome = one_run(args, peer, scenario, broker, modules)
                runs.append({"rep": rep, "scenario": scenario, "peer": peer, "outcome": outcome})
                print(_line(rep, peer, scenario, outcome), flush=True)
    doc = {
        "machine": host,
        "run": {
            "peers": peers,
            "scenarios": scenarios,
            "repetitions": args.repetitions,
            "big_repetitions": min(args.big_repetitions, args.repetitions),
            "nodes": 1 if broker == "memory" else args.nodes,
            "broker": {"redis": "Redis", "cluster": "a Redis Cluster of 3 primaries"}.get(
                broker, "the in-process broker"
            ),
            "pinning": pinning,
            "gateway_flags": GATEWAY_FLAGS,
            "event_loop": args.loop,
            "notes": notes,
            "sizes": sizes_from(args).describe(),
            "quick": args.quick,
            "seconds": time.monotonic() - started,
        },
        "summary": summarize(runs, peers, scenarios),
        "runs": runs,
    }
    page = markdown(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    md_path = args.markdown or args.json.with_suffix(".md")
    md_path.write_text(page)
    print("\n" + page)
    print(f"written: {args.json} and {md_path}")
    bad = [r for r in runs if "skipped" not in r["outcome"] and not r["outcome"].get("valid")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
