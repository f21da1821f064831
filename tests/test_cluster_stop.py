"""`make cluster` under Ctrl-C: deploy/cluster.py as a real process, sent SIGINTs in
bursts (as a terminal does when someone presses Ctrl-C again and again), always exits
and leaves none of its processes (redis-server, nodes, nginx) behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from contextlib import suppress
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import poll_until
from tests.plugins.deploy import nginx_or_skip
from tooling.ports import free_port
from tooling.processes import ROOT, find_tool

START = 60.0  # seconds: redis-server, three nodes and nginx on a loaded machine
STOP = 30.0  # seconds for the whole cluster to stop
ROUNDS = 3  # clusters started and interrupted, one after the other
BURST_GAP = 0.001  # seconds between two SIGINTs of a burst
BANNER = "cluster: up on "


def _children(pid: int) -> set[int]:
    """The live processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent_and_state(int(entry.name))[0] == pid:
            found.add(int(entry.name))
    return found


def _parent_and_state(pid: int) -> tuple[int | None, str]:
    """(parent pid, state letter) of `pid`, or (None, "") once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, ""
    state, parent = stat.rsplit(")", 1)[1].split()[:2]  # the name may hold spaces
    return int(parent), state


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie left to an init that does not reap is gone)."""
    return _parent_and_state(pid)[1] not in ("", "Z")


async def _start() -> tuple[asyncio.subprocess.Process, list[str]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "deploy" / "cluster.py"), "--port", str(port),
        "--redis", "single",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    async with asyncio.timeout(START):
        assert process.stdout is not None
        while BANNER not in "".join(output):
            line = (await process.stdout.readline()).decode()
            assert line, f"deploy/cluster.py exited:\n{''.join(output)}"
            output.append(line)
    return process, output


async def _interrupt_until_exit(process: asyncio.subprocess.Process) -> int:
    """SIGINTs, one every BURST_GAP s, until the process exits (at most STOP s).

    os.kill, not `process.send_signal`: that polls the child first, and a poll that
    reaps it leaves asyncio's watcher a returncode of 255."""
    waiting = asyncio.ensure_future(process.wait())
    try:
        async with asyncio.timeout(STOP):
            while not waiting.done():
                with suppress(ProcessLookupError):  # reaped, its wait not yet done
                    os.kill(process.pid, signal.SIGINT)
                await asyncio.wait({waiting}, timeout=BURST_GAP)
    finally:
        if not waiting.done():
            waiting.cancel()
    return waiting.result()


def _all_gone(pids: set[int]) -> bool:
    return not any(_alive(pid) for pid in pids)


def _kill(pids: set[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_repeated_ctrl_c_always_stops_the_whole_cluster() -> None:
    """Guards against a signal handler that takes a lock (threading.Event.set): a
    SIGINT arriving while another handler, or Event.wait, holds that lock deadlocked
    deploy/cluster.py, leaving Redis, the nodes and nginx running."""
    nginx_or_skip()
    if find_tool("redis-server") is None:
        pytest.skip("needs redis-server (apt-get install redis-server)")
    for _ in range(ROUNDS):
        process, output = await _start()
        children = _children(process.pid)
        try:
            assert len(children) == 5, f"expected redis, 3 nodes, nginx: {children}"
            try:
                code = await _interrupt_until_exit(process)
            except TimeoutError:
                pytest.fail(f"deploy/cluster.py hung on repeated SIGINTs:\n{''.join(output)}")
            assert process.stdout is not None
            rest = (await process.stdout.read()).decode()
            assert code == 0, f"exited with {code}:\n{''.join(output)}{rest}"
            await poll_until(partial(_all_gone, children), STOP)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            _kill(children)
