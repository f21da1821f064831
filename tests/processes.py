"""Real gateway processes for end-to-end tests; every wait is bounded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """`python -m gateway` on a free port, ready once /healthz answers."""

    def __init__(
        self, port: int | None = None, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        self._extra = extra
        self._env = env
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._proc: subprocess.Popen[bytes] | None = None

    label = "the gateway"
    health_path = "/healthz"  # answers 200 once the process serves

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def base(self) -> str:
        """The process's HTTP address, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        """Start the process and wait until it serves."""
        self.launch()
        self.wait_serving()
        return self

    def launch(self) -> GatewayProcess:
        """Start the process, without waiting for it to serve."""
        self._proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env={**os.environ, **(self._env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def command(self) -> list[str]:
        """The process's command line."""
        args = ["--port", str(self.port), "--grace-period", "0.2", "--log-level", "WARNING"]
        return [sys.executable, "-m", "gateway", *args, *self._extra]

    def wait_serving(self) -> None:
        """Wait (at most 15 s) until `health_path` answers; stop the process if it does not."""
        assert self._proc is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}{self.health_path}", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)  # a bounded poll of a process starting up
        self.stop()
        raise RuntimeError(
            f"{self.label} did not answer {self.health_path} within 15 s:\n{self.log()}"
        )

    def stop(self) -> None:
        """SIGTERM (the gateway closes its sockets with 1001), then wait."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def send_signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the process (SIGSTOP and SIGCONT pause and resume it)."""
        assert self._proc is not None
        self._proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the node dies without a word, as in a crash."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def log(self) -> str:
        """Everything the process wrote so far (read without moving the file offset
        the process writes at, so reading while it runs loses nothing)."""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def close(self) -> None:
        self.stop()
        self._log.close()


class ExampleBackendProcess(GatewayProcess):
    """examples/backend/app.py, the worked example of an application's backend, on a free
    port with its SQLite file at `db` and the backend secret in its environment."""

    label = "the example backend"
    health_path = "/"

    def __init__(self, db: Path, secret: str, gateway_page: str | None = None) -> None:
        super().__init__(None, env={"CHAT_BACKEND_SECRET": secret})
        self.db = db
        self._gateway_page = gateway_page  # where a login sends the browser

    def command(self) -> list[str]:
        app = ROOT / "examples" / "backend" / "app.py"
        args = ["--port", str(self.port), "--db", str(self.db)]
        if self._gateway_page is not None:
            args += ["--gateway", self._gateway_page]
        return [sys.executable, str(app), *args]
