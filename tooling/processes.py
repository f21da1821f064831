"""One child process of ours: its argv and environment, its log, the cores it may run
on, a parent death signal, and a stop by process group with a timeout.

Every child runs in a session of its own (the terminal's Ctrl-C reaches only the
parent, which stops its children in order) and so in a process group of its own,
which `stop` and `kill` end as a whole (nginx's workers too).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT = 10.0  # seconds for one process to exit before it is killed
PR_SET_PDEATHSIG = 1
INSTALL = {
    "redis-server": "apt-get install redis-server  (macOS: brew install redis)",
    "nginx": "apt-get install nginx  (macOS: brew install nginx)",
}


def find_tool(name: str) -> str | None:
    """`name` on PATH, or in the sbin directories a user's PATH often lacks (Debian's nginx)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_tools(tools: Sequence[str] = tuple(INSTALL)) -> list[str]:
    """Those of `tools` that are not installed, each with how to install it."""
    return [f"{tool}: {INSTALL.get(tool, '')}" for tool in tools if find_tool(tool) is None]


def child_setup(
    death_signal: signal.Signals | None, cores: tuple[int, ...] | None
) -> Callable[[], None] | None:
    """What a child runs between fork and exec: `death_signal` when its parent dies
    (Linux; kill -9 of the parent included), and `cores` as its CPU affinity (its
    threads inherit it). None when there is nothing to do."""
    if death_signal is None and cores is None:
        return None
    prctl: Any = None
    with contextlib.suppress(OSError, AttributeError):
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def setup() -> None:
        if death_signal is not None and prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(death_signal))
        if cores is not None:
            os.sched_setaffinity(0, cores)

    return setup


class Process:
    """One child process, started by `start` (again after a stop, on the same log)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        inherit_output: bool = False,
        stop_signal: signal.Signals = signal.SIGTERM,
        die_with_parent: bool = False,
        death_signal: signal.Signals | None = None,
        cores: tuple[int, ...] | None = None,
        cwd: Path = ROOT,
        inherit_env: bool = True,
    ) -> None:
        """`env`: variables on top of ours; `log`: a file its output is appended to (by
        default a temp file of its own; `inherit_output`: our stdout instead);
        `die_with_parent`: it gets `death_signal` (default `stop_signal`) when we die;
        `cores`: the CPUs it may run on; `inherit_env=False`: `env` alone."""
        self.name = name
        self.argv = list(argv)
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.log = log
        self.inherit_output = inherit_output
        self.stop_signal = stop_signal
        self.death_signal = (death_signal or stop_signal) if die_with_parent else None
        self.cores = cores
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._temp_log: IO[bytes] | None = None

    def start(self) -> Process:
        """Start it (not waiting for anything); returns self."""
        out: IO[bytes] | None = None
        if self.log is not None:
            self._log_file = out = self.log.open("ab")
        elif not self.inherit_output:
            if self._temp_log is None:
                self._temp_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            out = self._temp_log
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
            preexec_fn=child_setup(self.death_signal, self.cores),  # single-threaded: safe
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` if it runs (SIGSTOP and SIGCONT pause and resume it)."""
        if self.proc is not None and self.running:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after `timeout` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send its stop signal and wait; if it hangs, SIGTERM; then SIGKILL to its whole
        process group (it, if still there, and whatever it left). Returns the exit code."""
        if self.proc is None:
            return None
        for sig in dict.fromkeys((self.stop_signal, signal.SIGTERM)):
            if not self.running:
                break
            self.signal(sig)
            if self.wait(timeout) is None:
                print(f"{self.name} did not stop in {timeout:g}s after {sig.name}", file=sys.stderr)
        self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to its process group (a crash, without a word; what it left behind
        goes too), then reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def output(self) -> str:
        """Everything it wrote so far (read without moving the offset it writes at)."""
        if self._temp_log is not None:
            fd = self._temp_log.fileno()
            return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        if self.log is not None and self.log.exists():
            return self.log.read_text(errors="replace")
        return ""

    def tail(self, lines: int = 30) -> str:
        """The last `lines` lines of its log, when it has one."""
        return "\n".join(self.output().splitlines()[-lines:])

    def close(self) -> None:
        """Stop it and drop its temp log."""
        self.stop()
        if self._temp_log is not None:
            self._temp_log.close()
            self._temp_log = None
