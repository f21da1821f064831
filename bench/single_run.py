"""One run of the bench: a scenario against one server, from start to stop.

Start a Redis of its own (or a Redis Cluster, or none for the in-process broker) and
the server's nodes on the servers' cores, run one load-generator process
(bench/loadgen.py) on the other core with the scenario's Spec, then stop everything
and say what failed. bench/run.py runs these for every repetition, scenario and
server; bench/shards.py for each broker variant.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.backend_peer import backend_for, backend_stats
from bench.cluster import ROOT, Cluster
from bench.loadgen import RESULT_PREFIX, time_cap
from bench.params import SCALE_BASE, STORMS, Spec, sizes_from
from bench.procstat import core_plan
from tooling.processes import child_setup


def run_loadgen(spec: Spec, cores: tuple[int, ...] | None) -> dict[str, Any]:
    """One load-generator process for `spec`; its outcome, or why there is none."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=child_setup(signal.SIGKILL, cores),  # the bench is single-threaded: safe
    )
    try:
        out, _ = proc.communicate(json.dumps(spec.to_json()), timeout=time_cap(spec) + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"valid": False, "problems": ["the load generator did not finish"], "figures": {}}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in out.splitlines():
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    return {
        "valid": False,
        "problems": [f"the load generator exited {proc.returncode}"],
        "figures": {},
    }


def one_run(
    args: argparse.Namespace, peer: str, scenario: str, broker: str, modules: Path | None
) -> dict[str, Any]:
    """Start the cluster, run the load generator once, stop the cluster."""
    plan = core_plan()
    servers, loadgen = plan if plan else (None, None)
    count = 1 if broker == "memory" else args.nodes
    # bench.shards' variants: "+replica" gives Redis (each shard) a replica, which the
    # gateway waits for before an ack; "-nowait" tells it not to (--redis-ack-replicas 0).
    base = broker.split("+")[0]
    sizes = sizes_from(args)
    drain = ("--drain-seconds", f"{sizes.s5_drain_seconds:g}") if scenario == "s5drain" else ()
    with (
        backend_for(broker, loadgen) as backend_flags,
        Cluster(
            peer,
            count,
            redis=base in ("redis", "cluster"),
            cores=servers,
            modules=modules if peer == "node" else None,
            shards=3 if base == "cluster" else 0,
            replicas=1 if "+replica" in broker else 0,
            node_flags=(
                *(("--redis-ack-replicas", "0") if broker.endswith("-nowait") else ()),
                *backend_flags,
                *drain,
            ),
            kill_nodes=scenario in SCALE_BASE,
        ) as cluster,
    ):
        spec = Spec(
            scenario,
            peer,
            sizes,
            cluster.node_info(),
            cluster.redis_pids,
            loadgen,
            args.loop,
        )
        outcome = run_loadgen(spec, loadgen)
        died = cluster.failures()
        if scenario in STORMS:  # node A was killed (or drained) on purpose
            died = [d for d in died if not d.startswith(f"{peer} node 0 ")]
        if died:
            outcome["valid"] = False
            outcome.setdefault("problems", []).extend(d.splitlines()[0] for d in died)
            outcome["server_logs"] = died
        if backend_flags:
            _add_backend_figures(outcome, backend_flags)
    return outcome


def _add_backend_figures(outcome: dict[str, Any], flags: tuple[str, ...]) -> None:
    """The application's side of a "+hooks"/"+events" run: how often it was asked and
    the events' lag; a run whose application was never asked is invalid."""
    stats = backend_stats(flags)
    figures = outcome.setdefault("figures", {})
    for name, value in stats.items():
        figures[f"backend_{name}"] = value
    if not any(key in stats for key in ("connect", "publish", "events")):
        outcome["valid"] = False
        outcome.setdefault("problems", []).append("the application was never asked")
