"""examples/backend/app.py, the worked example of an application's backend, as a real
process for tests/test_example_backend.py (tooling/gateway.py's launcher)."""

from __future__ import annotations

import sys
from pathlib import Path

from tooling.gateway import GatewayProcess
from tooling.processes import ROOT


class ExampleBackendProcess(GatewayProcess):
    """The example backend on a free port, with its SQLite file at `db` and the backend
    secret in its environment."""

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
