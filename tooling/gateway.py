"""A gateway node (`python -m gateway`) as a real process, for end-to-end tests and the
fuzzer: on a free port, ready once /healthz answers; its memory, and the tracebacks
and warnings in its log."""

from __future__ import annotations

import re
import signal
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from tooling.ports import free_port
from tooling.processes import Process
from tooling.ready import get_status, wait_until

SERVE_TIMEOUT = 15.0  # seconds for a node to answer /healthz

# The last line of a traceback aiohttp logs ("Error handling request") when the client
# is at fault: a malformed request (400), or a reset before the 101 could be written.
CLIENT_CAUSED = re.compile(
    r"(aiohttp\.http_exceptions\.\w+|aiohttp\.client_exceptions\.ClientConnectionResetError"
    r"|ConnectionResetError)\b"
)


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

    # --- what its log and /proc say (the fuzzer's verdicts) ---------------------------

    def memory(self, field_name: str = "VmRSS") -> int:
        """A /proc/<pid>/status figure (VmRSS, VmHWM), in bytes; 0 once it is gone."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except (OSError, RuntimeError):
            return 0
        match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    def failures(self) -> list[str]:
        """The tracebacks that are failures of the node, not aiohttp's log line for a
        client that sent broken HTTP or reset the connection during the handshake."""
        return [t for t in self.tracebacks() if not CLIENT_CAUSED.match(t.splitlines()[-1])]

    def warnings(self) -> Counter[str]:
        """The node's WARNING and ERROR lines, numbers and names blanked, counted."""
        found: Counter[str] = Counter()
        for line in self.log().splitlines():
            level = re.match(r"\S+ \S+ (WARNING|ERROR) (\S+): (.*)", line)
            if level:
                text = re.sub(r"\d+", "N", level.group(3))
                text = re.sub(r"\(.*?\)|'.*?'", "(..)", text)
                found[f"{level.group(1)} {level.group(2)}: {text[:90]}"] += 1
        return found

    def tracebacks(self) -> list[str]:
        """Each traceback in the node's log, with the line that introduced it."""
        lines = self.log().splitlines()
        found = []
        for index, line in enumerate(lines):
            if line.startswith("Traceback"):
                end = index + 1
                while end < len(lines) and (lines[end].startswith(" ") or not lines[end]):
                    end += 1
                found.append("\n".join(lines[max(0, index - 1) : end + 1]))
        return found
