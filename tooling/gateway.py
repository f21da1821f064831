"""A gateway node (`python -m gateway`) as a real process, for end-to-end tests and the
fuzzer: on a free port, ready once /healthz answers."""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping

from tooling.ports import free_port
from tooling.processes import Process
from tooling.ready import get_status, wait_until

SERVE_TIMEOUT = 15.0  # seconds for a node to answer /healthz


class GatewayProcess:
    """`python -m gateway` on `port` (a free one by default) with `extra` flags."""

    def __init__(
        self, port: int | None = None, *extra: str, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        args = ["--port", str(self.port), "--grace-period", "0.2", "--log-level", "WARNING"]
        self.process = Process(
            f"gateway :{self.port}", [sys.executable, "-m", "gateway", *args, *extra], env=env
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        if self.process.pid is None or not self.process.running:
            raise RuntimeError("the node is not running")
        return self.process.pid

    def alive(self) -> bool:
        return self.process.running

    def start(self) -> GatewayProcess:
        """Start the process and wait until it serves."""
        self.launch()
        self.wait_serving()
        return self

    def launch(self) -> GatewayProcess:
        """Start the process, without waiting for it to serve."""
        self.process.start()
        return self

    def wait_serving(self, timeout: float = SERVE_TIMEOUT) -> None:
        """Wait (bounded) until /healthz answers; stop the process if it does not."""
        try:
            wait_until(
                "the gateway",
                lambda: get_status(f"http://127.0.0.1:{self.port}/healthz") == 200,
                timeout,
                process=self.process,
            )
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}\n{self.log()}") from None

    def stop(self) -> None:
        """SIGTERM (the gateway closes its sockets with 1001), then wait."""
        self.process.stop()

    def send_signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the process (SIGSTOP and SIGCONT pause and resume it)."""
        self.process.signal(sig)

    def kill(self) -> None:
        """SIGKILL: the node dies without a word, as in a crash."""
        self.process.kill()

    def log(self) -> str:
        """Everything the process wrote so far (readable while it runs)."""
        return self.process.output()

    def close(self) -> None:
        self.process.close()
