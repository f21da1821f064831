"""Listening, and `--workers N`: one node per core on one port.

With `--workers N` (N > 1) the process started by the user is a supervisor: it starts N
worker processes of `chat-gateway` with the same settings, each a node of its own (its
node id gets a `-wI` suffix, its own Redis subscription, presence heartbeat and
connections), all listening on the same port with SO_REUSEPORT so the kernel spreads
new connections over them. SIGTERM and SIGINT are passed on to every worker (each
drains as a single node does); when one worker dies unexpectedly the others are
stopped too and the supervisor exits 1, so whatever restarts the node restarts all.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

WORKER_ENV = "CHAT_GATEWAY_WORKER"  # set by the supervisor: this worker's index
STOP_WAIT = 30.0  # seconds the supervisor waits for a stopping worker before killing it

log = logging.getLogger(__name__)


def worker_index() -> int | None:
    """This process's worker index when a supervisor started it, else None."""
    raw = os.environ.get(WORKER_ENV)
    return int(raw) if raw is not None and raw.isdecimal() else None


def listen(
    host: str, port: int, *, reuse_port: bool = False, backlog: int | None = 1024
) -> socket.socket:
    """A listening TCP socket on `host`:`port` (the first address `host` resolves to);
    with `backlog` None it is bound only (a supervisor holding the port for its workers:
    a listening socket in their SO_REUSEPORT group would get connections it never takes).

    Raises OSError (socket.gaierror for an unknown host) when it cannot.
    """
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def listen_error(exc: OSError) -> str:
    """An OSError of `listen` as words: `address already in use`, `unknown host (...)`."""
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return (exc.strerror or str(exc)).lower()


def supervise(argv: Sequence[str], workers: int) -> int:
    """Run `workers` worker processes of `chat-gateway argv` until they stop; the exit
    status: 0 after a signal stopped them all, 1 when one died on its own."""
    command = [sys.executable, "-m", "gateway", *argv]
    procs = [
        subprocess.Popen(command, env={**os.environ, WORKER_ENV: str(index)})
        for index in range(workers)
    ]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    status = 0
    try:
        pid, _ = os.wait()  # the first worker to end (a signal arrives as EINTR, retried)
        if not stopping:
            name = next((f"worker {i}" for i, p in enumerate(procs) if p.pid == pid), pid)
            log.error("%s ended on its own; stopping the others", name)
            status = 1
            forward(signal.SIGTERM, None)
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return status
