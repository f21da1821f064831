"""tooling/processes.py, what the bench and `make cluster` count on: a child sits on the
cores it is given, dies with its parent (even after kill -9), and a stop leaves nothing
of its process group behind. Real processes; every wait is bounded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tooling.processes import Process
from tooling.ready import wait_until

WAIT = 10.0


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet: it runs no more."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def first_line(process: Process) -> str:
    """The first line the process printed (bounded wait)."""
    wait_until("its first line", lambda: "\n" in process.output(), WAIT, process=process)
    return process.output().splitlines()[0]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to choose one")
def test_a_child_runs_on_the_cores_it_is_given() -> None:
    """Guards against the bench's servers and load generator sharing cores: a child
    started with `cores` is pinned to them before it runs anything."""
    core = max(os.sched_getaffinity(0))
    script = "import os; print(sorted(os.sched_getaffinity(0)), flush=True); input()"
    process = Process("pinned", [sys.executable, "-c", script], cores=(core,)).start()
    try:
        assert first_line(process) == f"[{core}]"
    finally:
        process.close()


def test_a_child_dies_with_its_parent_even_after_kill_9() -> None:
    """Guards against a bench or `make cluster` killed with -9 leaving its redis-servers
    and nodes running: its children get the parent death signal from the kernel."""
    script = (
        "import time; from tooling.processes import Process;"
        "child = Process('sleeper', ['sleep', '60'], die_with_parent=True).start();"
        "print(child.pid, flush=True); time.sleep(60)"
    )
    parent = Process("parent", [sys.executable, "-c", script]).start()
    try:
        child = int(first_line(parent))
        assert not gone(child)
        assert parent.proc is not None
        parent.proc.kill()  # the parent alone, as kill -9 of its pid: not its group
        parent.wait(WAIT)
        wait_until("the child's death", lambda: gone(child), WAIT)
    finally:
        parent.close()


def test_a_stop_leaves_nothing_of_the_process_group() -> None:
    """Guards against a stopped process leaving its own children running (nginx's
    workers, a shell's background job): the stop ends its whole process group."""
    process = Process("shell", ["sh", "-c", "sleep 60 & echo $!; wait"]).start()
    try:
        orphan = int(first_line(process))
        process.stop(timeout=WAIT)
        wait_until("the background job's death", lambda: gone(orphan), 2.0)
    finally:
        process.close()
