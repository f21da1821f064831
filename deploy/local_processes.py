"""The processes of `make cluster`: finding the tools, free ports, and one child
process in a session of its own that stops in order and dies with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
INSTALL = {
    "redis-server": "apt-get install redis-server  (macOS: brew install redis)",
    "nginx": "apt-get install nginx  (macOS: brew install nginx)",
}
STOP_TIMEOUT = 10.0  # seconds for one process to exit before it is killed


class ClusterError(Exception):
    """The cluster could not start (a tool is missing, a process failed)."""


class Interrupted(ClusterError):
    """A signal asked to stop while the cluster was starting."""


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


def missing_tools() -> list[str]:
    """The tools the cluster needs that are not installed, with how to install each."""
    return [f"{tool}: {hint}" for tool, hint in INSTALL.items() if find_tool(tool) is None]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent(sig: signal.Signals) -> None:  # runs in the child, before exec
    """Linux: the child gets `sig` if this process dies without stopping it (kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG


class Process:
    """One child process in a session of its own (the terminal's Ctrl-C reaches only
    the cluster, which stops the children in order)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stop_signal = stop_signal
        self.env = env
        self.log = log
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> Process:
        out: Any = None
        if self.log is not None:
            self._log_file = self.log.open("ab")
            out = self._log_file
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
            preexec_fn=partial(_die_with_parent, self.stop_signal)
            if self.die_with_parent
            else None,
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
        if self.running:
            assert self.proc is not None
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
        """Send its stop signal and wait; if it hangs, SIGTERM, then SIGKILL to its whole
        process group (nginx's workers too). Returns the exit code."""
        if self.proc is None:
            return None
        for sig in (self.stop_signal, signal.SIGTERM):
            if not self.running:
                break
            self.signal(sig)
            if self.wait(timeout) is None:
                print(f"cluster: {self.name} did not stop in {timeout:g}s after {sig.name}")
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        """The end of its log, when it has one."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def get_status(url: str) -> int | None:
    """The status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None
