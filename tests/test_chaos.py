"""`make chaos` in the suite: a 60-second fault campaign, run as an operator runs it
(`python -m bench.chaos`, a real process starting Redis and three gateway nodes, which
post their events to the campaign's application), must end clean, events included. The
seed changes every day (CHAOS_SEED repeats a run); an even seed runs on one Redis, an
odd one on a Redis Cluster with replicas, so both modes take turns.

On a cluster a killed primary comes back only after its replica took over
(`--failover-first`): one back while the failover spreads used to cost a node messages
for good (docs/operations.md, "A fault campaign"); that is fixed and racing campaigns
ran clean, but the suite keeps the calmer schedule until longer runs confirm it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 60
# startup, 60 s of faults (a pause may run 20 s over), quiet, presence, events drained
RUN_TIMEOUT = 420.0
FINAL = re.compile(
    r"^chaos: (\d+) faults, (\d+) acked, (\d+) lost, (\d+) duplicated, (\d+) reordered, "
    r"presence (converged|diverged); events: (\d+) delivered, \d+ repeated, (\d+) lost, "
    r"(\d+) duplicated, (\d+) reordered, (\d+) unknown, (\d+) presence$"
)


@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="the campaign needs redis-server and redis-cli",
)
@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_a_short_fault_campaign_loses_duplicates_and_reorders_nothing() -> None:
    seed = int(os.environ.get("CHAOS_SEED") or time.time() // 86400)
    mode = "single" if seed % 2 == 0 else "cluster"
    known_defect = ["--failover-first"] if mode == "cluster" else []
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--seconds", str(SECONDS), "--seed", str(seed),
         "--redis", mode, *known_defect],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    final = FINAL.match(lines[-1]) if lines else None
    assert final is not None, f"no final line (seed {seed}, {mode}):\n{output}"
    faults, acked = int(final[1]), int(final[2])
    assert done.returncode == 0, f"seed {seed}, {mode}:\n{output}"
    assert final.group(3, 4, 5, 6) == ("0", "0", "0", "converged"), output
    assert final.group(8, 9, 10, 11) == ("0",) * 4, output  # presence events: reported
    assert faults >= 5 and acked >= 300, f"too little happened (seed {seed}, {mode}):\n{output}"
    assert int(final[7]) > acked, f"fewer events than acked messages:\n{output}"
