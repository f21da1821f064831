"""A real Prometheus for the tests: deploy/prometheus/prometheus.yml and alerts.yml, run
with a short scrape interval against a `make cluster` of ours, and its HTTP API.

Debian's `prometheus` package has the server and promtool (.ci/run installs it). Where
they are missing the tests skip, unless CHAT_TEST_PROMETHEUS=require (CI sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tooling.ports import free_port
from tooling.processes import ROOT, Process
from tooling.ready import get_status, wait_until

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
SCRAPE_SECONDS = 1  # the tests' scrape and rule evaluation interval (15 s in the file)
START_TIMEOUT = 30.0  # seconds for Prometheus to answer /-/ready


def tool_or_skip(name: str) -> str:
    """The path of `prometheus` or `promtool`; skips without it unless
    CHAT_TEST_PROMETHEUS=require."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CHAT_TEST_PROMETHEUS") == "require":
            pytest.fail(f"CHAT_TEST_PROMETHEUS=require, but {name} is not installed")
        pytest.skip(f"needs {name} (apt-get install prometheus); CI installs it")
    return path


class PrometheusServer:
    """deploy/prometheus/prometheus.yml in a temp dir (scrape interval shortened), the
    nodes listed in its `targets/local-cluster.json` (as `make cluster` lists them)."""

    def __init__(self, binary: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chat-prometheus-"))
        self.port = free_port()
        self.targets = self.dir / "targets" / "local-cluster.json"
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = f"{SCRAPE_SECONDS}s"
        config["global"]["evaluation_interval"] = f"{SCRAPE_SECONDS}s"
        for job in config["scrape_configs"]:
            for sd in job.get("file_sd_configs", ()):
                sd["refresh_interval"] = f"{SCRAPE_SECONDS}s"
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        shutil.copy(PROMETHEUS_DIR / "alerts.yml", self.dir / "alerts.yml")
        argv = [
            binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process = Process("prometheus", argv, log=self.dir / "prometheus.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        """Start it; returns once /-/ready answers 200 (within START_TIMEOUT)."""
        self.process.start()
        wait_until(
            "prometheus",
            lambda: get_status(f"{self.url}/-/ready") == 200,
            START_TIMEOUT,
            process=self.process,
        )
        return self

    def log(self) -> str:
        return self.process.output()[-4000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; remove the temp dir."""
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the HTTP API ------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH; the `data` of a success. A refused query (400, 422: it does
        not parse, or cannot be evaluated) raises AssertionError with Prometheus's words."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
            message = f"{params}: {body.get('errorType')}: {body.get('error')}"
            raise AssertionError(message) from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query: its vector (or scalar, as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, seconds: float) -> list[dict[str, Any]]:
        """A range query over the last `seconds`, one step per scrape (as Grafana asks)."""
        end = time.time()
        result: list[dict[str, Any]] = self.api(
            "query_range",
            query=expr,
            start=f"{end - seconds:.3f}",
            end=f"{end:.3f}",
            step=f"{SCRAPE_SECONDS}s",
        )["result"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def rules(self) -> list[dict[str, Any]]:
        """Every rule loaded, each with its group's file, health and state."""
        return [
            {**rule, "file": group["file"]}
            for group in self.api("rules")["groups"]
            for rule in group["rules"]
        ]
