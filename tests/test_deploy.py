"""The deployment files (issue #4): docker-compose.yml, deploy/Dockerfile, deploy/nginx.conf.

These check the files themselves (the compose file as YAML, the Dockerfile by its key
lines; nginx.conf, rendered for the local cluster, must pass `nginx -t`);
tests/test_compose.py builds the images and runs the stack for real with podman. Set
CHAT_TEST_NGINX=require (CI does) to fail instead of skipping where nginx is missing.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Settings
from gateway.metrics import Metrics
from tests.plugins.deploy import CLUSTER_INIT, CLUSTER_NODES, GATEWAYS, nginx_or_skip
from tooling.cluster import Cluster
from tooling.nginx import nginx_argv, render_nginx_conf
from tooling.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_has_redis_three_gateways_and_nginx(compose: dict[str, Any]) -> None:
    """Guards against a compose file that lost a service or names them differently from
    the upstream in nginx.conf."""
    default = {n for n, service in compose["services"].items() if "profiles" not in service}
    assert default == {"redis", *GATEWAYS, "nginx"}
    assert compose["services"]["redis"]["image"].startswith("redis:7")
    upstreams = re.findall(r"^\s*server\s+(\S+?):8080\b", NGINX_CONF.read_text(), re.MULTILINE)
    assert upstreams == [*GATEWAYS, *GATEWAYS]  # the HTTP and the WebSocket upstream


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    """Guards against depends_on: service_healthy waiting on a service that never says so."""
    for name, service in compose["services"].items():
        if name == CLUSTER_INIT:
            continue  # a one-shot job, which nothing waits on
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(
        "/healthz" in part for part in compose["services"]["gateway1"]["healthcheck"]["test"]
    )


def test_gateways_wait_for_redis_and_nginx_for_the_gateways(compose: dict[str, Any]) -> None:
    """Guards against nodes starting before Redis answers, or nginx before its upstreams."""
    services = compose["services"]
    for name in GATEWAYS:
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert services["nginx"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in GATEWAYS
    }


def test_gateways_have_distinct_node_ids_and_reach_redis(compose: dict[str, Any]) -> None:
    """Guards against two nodes sharing an id (they would reap each other's presence)."""
    envs = [compose["services"][name]["environment"] for name in GATEWAYS]
    assert [env["CHAT_NODE_ID"] for env in envs] == list(GATEWAYS)
    for env in envs:
        assert env["CHAT_REDIS_URL"] == "${CHAT_REDIS_URL:-redis://redis:6379/0}"
        assert env["CHAT_HOST"] == "0.0.0.0"
        assert str(env.get("CHAT_PORT", "8080")) == "8080"
    for name in GATEWAYS:
        build = compose["services"][name]["build"]
        assert (build["context"], build["dockerfile"]) == (".", "deploy/Dockerfile")


def test_the_redis_cluster_profile_has_six_nodes_joined_with_replicas(
    compose: dict[str, Any],
) -> None:
    """Guards against a cluster profile whose nodes are not cluster nodes, announce one
    another's names, never get joined, or are not the ones the documented URL names."""
    services = compose["services"]
    profiled = {
        n for n, service in services.items() if "redis-cluster" in service.get("profiles", ())
    }
    assert profiled == {*CLUSTER_NODES, CLUSTER_INIT}
    for name in CLUSTER_NODES:
        node = services[name]
        assert node["profiles"] == ["redis-cluster"] and node["image"].startswith("redis:7")
        assert node["command"][:2] == ["redis-server", "/etc/redis-cluster.conf"]
        assert node["command"][2:] == ["--cluster-announce-hostname", name]
        assert "./deploy/redis-cluster.conf:/etc/redis-cluster.conf:ro" in node["volumes"]
        assert f"{name}:/data" in node["volumes"] and name in compose["volumes"]
    conf = (ROOT / "deploy" / "redis-cluster.conf").read_text()
    for line in (
        "cluster-enabled yes",
        "cluster-preferred-endpoint-type hostname",
        "cluster-require-full-coverage no",
        "appendonly yes",
        "protected-mode no",
    ):
        assert re.search(rf"^{line}$", conf, re.MULTILINE), line  # fmt: skip
    init = services[CLUSTER_INIT]
    assert init["depends_on"] == {n: {"condition": "service_healthy"} for n in CLUSTER_NODES}
    assert init["command"] == ["sh", "/usr/local/bin/redis-cluster-init.sh"]
    assert init["volumes"] == [
        "./deploy/redis-cluster-init.sh:/usr/local/bin/redis-cluster-init.sh:ro"
    ]
    script = (ROOT / "deploy" / "redis-cluster-init.sh").read_text()
    assert "--cluster create" in script and "--cluster-replicas 1" in script
    assert f'nodes="{" ".join(CLUSTER_NODES)}"' in script and "cluster meet" in script
    documented = re.search(r"CHAT_REDIS_URL=redis\+cluster://(\S+)", COMPOSE.read_text())
    assert documented is not None
    hosts = [seed.split(":")[0] for seed in documented.group(1).split(",")]
    assert hosts and set(hosts) <= set(CLUSTER_NODES)


def test_nginx_mounts_the_shared_conf_on_8080(compose: dict[str, Any]) -> None:
    """Guards against a second, drifting nginx config for compose."""
    nginx = compose["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["ports"] == ["${CHAT_PUBLISH:-8080}:8080"]  # 8080 unless CHAT_PUBLISH says
    command = nginx["command"]
    assert command[command.index("-c") + 1] == "/etc/nginx/nginx.conf"
    assert "daemon off;" in command[command.index("-g") + 1]


def test_gateways_get_time_to_drain(compose: dict[str, Any]) -> None:
    """Guards against docker killing a node (SIGKILL) in the middle of its drain."""
    for name in GATEWAYS:
        service = compose["services"][name]
        grace = int(str(service["stop_grace_period"]).removesuffix("s"))
        assert grace > float(service["environment"]["CHAT_DRAIN_SECONDS"]) + 5


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile line, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    rows = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def test_dockerfile_is_small_non_root_healthchecked_and_exec_form() -> None:
    """Guards against a root container, no health check, and a shell-form entrypoint
    (sh as PID 1 swallows SIGTERM: the node would be killed, never drained)."""
    rows = _instructions(DOCKERFILE.read_text())
    assert rows[0] == ("ARG", "BASE=python:3.11-slim")  # what users pull, by default
    assert [args for keyword, args in rows if keyword == "FROM"] == ["${BASE} AS build", "${BASE}"]
    users = [args for keyword, args in rows if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    checks = [args for keyword, args in rows if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0]
    entry = [args for keyword, args in rows if keyword in ("ENTRYPOINT", "CMD")]
    assert entry and all(isinstance(json.loads(args), list) for args in entry)
    assert json.loads(entry[-1]) == ["chat-gateway"]
    assert any(keyword == "RUN" and "pip install" in args for keyword, args in rows)


def test_rendering_replaces_only_the_addresses() -> None:
    """Guards against the local cluster's nginx differing from compose's in anything but
    where the nodes and the balancer listen."""
    template = NGINX_CONF.read_text()
    rendered = render_nginx_conf(template, "127.0.0.1:9999", ["127.0.0.1:1001", "127.0.0.1:1002"])
    assert not re.search(r"^[^#]*gateway\d", rendered, re.MULTILINE)  # comments may
    servers = re.findall(r"^\s*server (\S+) (.*);$", rendered, re.MULTILINE)
    assert [address for address, _ in servers] == ["127.0.0.1:1001", "127.0.0.1:1002"] * 2
    assert [params for _, params in servers] == ["max_fails=1 fail_timeout=5s"] * 2 + [
        "max_fails=0"
    ] * 2
    assert "listen 127.0.0.1:9999;" in rendered
    addresses = re.compile(r"^\s*(server \S+:\d+ .*|listen .*);\n", re.MULTILINE)
    assert addresses.sub("", rendered) == addresses.sub("", template)


def test_nginx_conf_speaks_websocket_and_skips_nodes_that_are_down() -> None:
    """Guards against a balancer that drops the upgrade, cuts idle WebSockets after 60 s,
    or keeps sending clients to a node that is down or draining; and against marking
    WebSocket nodes failed (nginx would then give a restarted node one WebSocket per
    fail_timeout, and after a rolling restart answer "no live upstreams")."""
    conf = NGINX_CONF.read_text()
    ws_location = conf[conf.index("location = /ws") :]
    assert "proxy_pass http://gateways_ws;" in ws_location.split("}")[0]
    ws_upstream = conf[conf.index("upstream gateways_ws") :].split("}")[0]
    assert re.findall(r"server gateway\d:8080 (.*);", ws_upstream) == ["max_fails=0"] * 3
    for directive in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 1h;",
        "proxy_next_upstream error timeout http_502 http_503;",
    ):
        assert directive in conf
    assert re.search(r"server gateway1:8080 max_fails=\d+ fail_timeout=\d+s;", conf)


def test_nginx_accepts_the_conf_rendered_for_the_local_cluster(tmp_path: Path) -> None:
    """Guards against a conf nginx refuses (make cluster and compose would both fail)."""
    nginx_or_skip()
    local = Cluster(free_port())
    try:
        conf = tmp_path / "nginx.conf"
        conf.write_text(local.render_nginx_conf())
        argv = nginx_argv(conf)
        result = subprocess.run(
            [argv[0], "-t", *argv[1:]], capture_output=True, text=True, timeout=30
        )
    finally:
        local.stop()  # nothing started: removes its temp dir
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def test_the_operations_guide_lists_every_setting() -> None:
    """Guards against a setting the operations guide does not explain."""
    for f in fields(Settings):
        assert f"| `--{f.name.replace('_', '-')}` | `CHAT_{f.name.upper()}` |" in OPERATIONS


def test_the_operations_guide_explains_every_metric() -> None:
    """Guards against a metric on /metrics that the operations guide does not explain."""
    exposed = re.findall(r"^# TYPE (\S+) ", Metrics().render().decode(), re.MULTILINE)
    names = {name for name in exposed if not name.endswith("_created")}
    assert names
    for name in names:
        assert f"`{name}" in OPERATIONS, name


def test_nodes_behind_the_balancer_trust_it_for_the_client_address() -> None:
    """Guards against capping every node at --max-connections-per-ip in total (behind
    nginx all clients share its address unless its X-Forwarded-For is trusted), against
    a deployment that turns the limit off instead, and against an nginx that passes a
    client's own X-Forwarded-For on (the nodes trust every private address in compose,
    and 127.0.0.1 in make cluster: a client there could name any address)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if name.startswith("gateway"):
            env = service["environment"]
            limit = str(env["CHAT_MAX_CONNECTIONS_PER_IP"])
            assert limit.removeprefix("${CHAT_MAX_CONNECTIONS_PER_IP:-").rstrip("}") == "100"
            trusted = env["CHAT_TRUSTED_PROXIES"].removeprefix("${CHAT_TRUSTED_PROXIES:-")
            assert "10.0.0.0/8" in trusted and "172.16.0.0/12" in trusted
    local = (ROOT / "tooling" / "cluster.py").read_text()
    assert '"CHAT_TRUSTED_PROXIES"' in local and '"CHAT_MAX_CONNECTIONS_PER_IP"' not in local
    forwarded = re.findall(r"proxy_set_header X-Forwarded-For (\S+);", NGINX_CONF.read_text())
    assert forwarded == ["$remote_addr"]


def test_nginx_logs_no_query_strings() -> None:
    """Guards against credentials in the balancer's access log: ?token= and ?session=
    are bearer secrets, and $request, $request_uri, $args and $query_string carry them."""
    conf = NGINX_CONF.read_text()
    log_format = conf[conf.index("log_format") : conf.index(";", conf.index("log_format"))]
    assert "$uri" in log_format
    for variable in ("$request ", '$request"', "$request_uri", "$args", "$query_string"):
        assert variable not in log_format
