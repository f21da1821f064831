"""docker-compose.yml run for real with podman and podman-compose, for tests/test_compose.py.

The images come from deploy/local-images.sh (a bookworm base, stand-ins for `redis:7`
and `nginx:1.27`, the gateway image from a host-built wheelhouse), so nothing is pulled.
Podman 4.3 schedules health checks through systemd, which a container sandbox lacks, and
podman-compose ignores `condition: service_healthy` before podman 4.6: so the stack's
health checks (the image's and compose's own commands, run inside each container) are
run here, with `podman healthcheck run`, until every service passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_IMAGES = ROOT / "deploy" / "local-images.sh"
GATEWAY_IMAGE = "localhost/chat-gateway:latest"
SERVICES = ("redis", "gateway1", "gateway2", "gateway3", "nginx")
IMAGES_TIMEOUT = 900.0  # seconds for deploy/local-images.sh on a fresh machine
COMMAND_TIMEOUT = 120.0  # seconds for any one podman or podman-compose command


def podman_or_skip() -> str:
    """The podman binary, where containers can run; skips (saying why) elsewhere, and
    fails instead under CHAT_TEST_COMPOSE=require (CI)."""
    reason = None
    podman = shutil.which("podman")
    if podman is None:
        reason = "needs podman (apt-get install podman runc debootstrap); CI installs it"
    elif subprocess.run([podman, "info"], capture_output=True, timeout=60).returncode != 0:
        reason = "podman is installed but `podman info` fails: containers cannot run here"
    elif os.geteuid() != 0:
        reason = "needs root: deploy/local-images.sh builds its base images with debootstrap"
    if reason is None:
        assert podman is not None
        return podman
    if os.environ.get("CHAT_TEST_COMPOSE") == "require":
        pytest.fail(f"CHAT_TEST_COMPOSE=require, but {reason}")
    pytest.skip(reason)


def run(argv: list[str], *, timeout: float = COMMAND_TIMEOUT, **env: str) -> str:
    """Run a command to its end; its stdout, or a failure that shows its output."""
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def run_status(argv: list[str]) -> int:
    """A command's exit status (its output dropped)."""
    return subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT).returncode


def build_images() -> float:
    """deploy/local-images.sh (cached: only what is missing is built); seconds it took."""
    started = time.monotonic()
    run(["bash", str(LOCAL_IMAGES)], timeout=IMAGES_TIMEOUT, PYTHON=sys.executable)
    return time.monotonic() - started


class Stack:
    """One compose project of docker-compose.yml, its balancer on 127.0.0.1:`port`."""

    def __init__(
        self,
        podman: str,
        project: str,
        port: int,
        *,
        profile: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.podman = podman
        self.project = project
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        compose = Path(sys.executable).with_name("podman-compose")
        self._compose = [str(compose), "--project-name", project]
        if profile is not None:
            self._compose += ["--profile", profile]
        self._env = {**(env or {}), "CHAT_PUBLISH": f"127.0.0.1:{port}"}

    def compose(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """podman-compose with this project (and profile), the balancer's port and the
        stack's variables."""
        return run([*self._compose, *args], timeout=timeout, **self._env)

    def container(self, service: str) -> str:
        """The container podman-compose names for `service`."""
        return f"{self.project}_{service}_1"

    def podman_run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        return run([self.podman, *args], timeout=timeout)

    def healthy(self, service: str) -> bool:
        """Runs the service's health check in its container once: passed?"""
        return run_status([self.podman, "healthcheck", "run", self.container(service)]) == 0

    def wait_healthy(self, services: tuple[str, ...], timeout: float) -> float:
        """Seconds until every service in `services` passed its health check."""
        started = time.monotonic()
        waiting = list(services)
        while waiting:
            waiting = [service for service in waiting if not self.healthy(service)]
            if waiting and time.monotonic() - started > timeout:
                raise AssertionError(f"not healthy within {timeout:g}s: {waiting}\n{self.logs()}")
            if waiting:
                time.sleep(0.5)  # the interval between checks, bounded by `timeout`
        return time.monotonic() - started

    def metric(self, service: str, sample: str) -> float:
        """One sample of the node's /metrics, read from inside its container."""
        script = (
            "import urllib.request as u; "
            "print(u.urlopen('http://127.0.0.1:8080/metrics', timeout=5).read().decode())"
        )
        page = self.podman_run("exec", self.container(service), "python", "-c", script)
        for line in page.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    def node_holding(self, mode: str) -> list[str]:
        """The gateway services with a connection in `mode` (json or text) open."""
        sample = f'chat_connections{{mode="{mode}"}}'
        return [
            name
            for name in SERVICES
            if name.startswith("gateway") and self.metric(name, sample) > 0
        ]

    def wait_exited(self, service: str, timeout: float) -> int:
        """The exit code of a one-shot service, once it exited (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        fields = "{{.State.Status}} {{.State.ExitCode}}"
        while True:
            state = self.podman_run("inspect", self.container(service), "--format", fields)
            status, code = state.split()
            if status == "exited":
                return int(code)
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} still {status} after {timeout:g}s")
            time.sleep(0.5)  # a poll of a job that takes seconds, bounded by `timeout`

    def log(self, service: str) -> str:
        """Everything `service` wrote so far, its stdout and its stderr (where the
        gateways log) interleaved."""
        done = subprocess.run(
            [self.podman, "logs", self.container(service)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if done.returncode != 0:
            raise AssertionError(f"podman logs {self.container(service)}:\n{done.stdout}")
        return done.stdout

    def requests(self, service: str, path: str) -> list[str]:
        """The lines of `service`'s log (nginx's or a gateway's access log) for
        `GET path`."""
        return [line for line in self.log(service).splitlines() if f'"GET {path}"' in line]

    def ws_refused(self) -> int:
        """WebSocket upgrades nginx answered 429 (over a node's per-address limit)."""
        return sum(1 for line in self.requests("nginx", "/ws") if '"GET /ws" 429 ' in line)

    def logs(self, *services: str) -> str:
        """The last lines of every service's log, for a failure message."""
        out = []
        for service in services or SERVICES:
            done = subprocess.run(
                [self.podman, "logs", "--tail", "30", self.container(service)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            out.append(f"--- {service}\n{done.stdout}{done.stderr}")
        return "\n".join(out)

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=io.podman.compose.project={self.project}"
        found = {
            "containers": self.podman_run("ps", "-a", "--filter", label, "--format", "{{.Names}}"),
            "pods": self.podman_run("pod", "ls", "--format", "{{.Name}}"),
            "networks": self.podman_run("network", "ls", "--format", "{{.Name}}"),
            "volumes": self.podman_run("volume", "ls", "--format", "{{.Name}}"),
        }
        return {
            kind: [name for name in listing.split() if self.project in name]
            for kind, listing in found.items()
        }
