"""The gateway process under fuzz: its memory, and what its log says went wrong."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.processes import GatewayProcess

# The last line of a traceback aiohttp logs ("Error handling request") when the client
# is at fault: a malformed request (400), or a reset before the 101 could be written.
CLIENT_CAUSED = re.compile(
    r"(aiohttp\.http_exceptions\.\w+|aiohttp\.client_exceptions\.ClientConnectionResetError"
    r"|ConnectionResetError)\b"
)


class FuzzedNode(GatewayProcess):
    """The gateway process under fuzz: its pid, and its memory from /proc."""

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the node is not running")
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

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
