"""What the bench reads from /proc: a process's CPU time and RSS, and the machine.

CPU time is utime + stime from /proc/PID/stat (every thread of the process), so Redis's
and Node's helper threads are counted; RSS is VmRSS from /proc/PID/status.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds `pid` has used so far; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and ')'
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14, 15 of stat(5)


def rss_kib(pid: int) -> int | None:
    """Resident memory of `pid` in KiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def own_cpu_seconds() -> float:
    """This process's user + system CPU seconds (getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_sum(pids: list[int]) -> float:
    """Summed CPU seconds of `pids`; a process that is gone counts 0 (sample it before)."""
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def core_plan() -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(servers' cores, load generator's cores): the last core for the load generator and
    the rest for the servers and Redis; None on a single core (nothing is pinned)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return tuple(cores[:-1]), (cores[-1],)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def machine() -> dict[str, Any]:
    """The machine the bench runs on, as the report shows it."""
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in load],
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": _version(["redis-server", "--version"]),
        "node": _version(["node", "--version"]),
    }
