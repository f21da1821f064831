"""The Grafana dashboard and the alert rules (issue #24), checked against a real
Prometheus scraping a real `make cluster`.

Every panel query and every alert expression goes through Prometheus's HTTP API
against three gateway processes on one redis-server (deploy/cluster.py, as `make
cluster` runs them), which ask an application (tests/backend_app.py, served from a
thread) at every connect, join and send and post it their events, after a little chat:
each parses, names only metrics the nodes export, each panel query returns data; the
rules load healthy, stay quiet on a healthy cluster and fire on a hook the application
fails, a killed node and a lost Redis. Grafana itself is not installable
here: the dashboard's JSON is decoded with Grafana's generated models
(grafana-foundation-sdk), which keeps only the keys Grafana's schema knows, and its
layout is checked by hand. Skips without prometheus, unless CHAT_TEST_PROMETHEUS=require.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.backend_app import BackendApp, Received, Reply
from tests.conftest import JSON_PROTOCOL, JsonPeer
from tests.monitoring_queries import (
    DASHBOARD,
    Query,
    alert_queries,
    alert_rules,
    dashboard,
    exported_names,
    lost,
    metric_names,
    panel_queries,
    panels,
    variable_queries,
    wait_for,
)
from tests.plugins.deploy import nginx_or_skip
from tests.prometheus_server import PROMETHEUS_DIR, PrometheusServer, tool_or_skip
from tooling.cluster import Cluster
from tooling.ports import free_port
from tooling.processes import ROOT

ROWS = ["Is it up?", "How busy?", "Is anyone suffering?", "Is something stuck?"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for each target
NODE_ARGS = ["--presence-timeout", "2", "--probe-interval", "0.5", "--grace-period", "0.2"]
HOOKS = ("connect", "join", "publish")
CLOSED_ROOM = "closed"  # the application refuses everyone this room


# --- the files themselves ---------------------------------------------------------------


def test_dashboard_has_a_row_per_question_and_a_sound_layout() -> None:
    """Guards against a dashboard Grafana lays out wrongly (panels on top of each other,
    ids that clash), a panel that ignores the data source or node variables, and a row
    that lost its question."""
    board = dashboard()
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == ROWS
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and all(isinstance(v, int) for v in grid.values())
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not area & cells, f"{panel['title']!r} overlaps another panel"
        cells |= area
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    node = variables["instance"]
    assert node["datasource"] == DATASOURCE and node["includeAll"] and node["allValue"] == ".*"
    for panel in panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["description"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip()
            assert 'instance=~"$instance"' in target["expr"], f"{panel['title']}: no node filter"


def test_dashboard_keeps_every_key_through_grafanas_own_models() -> None:
    """Guards against keys Grafana does not know (misspelt, or from another panel type),
    which it ignores without a word: decoded with the models generated from Grafana's
    schema (dashboard, rows, time series, stat, Prometheus queries, variables) and
    encoded again, nothing may be lost or changed. Values' types are not checked."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()  # panel options and queries by type
    board = dashboard()
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert not lost(board, again, "dashboard")


def test_every_alert_says_what_it_means_and_what_to_do() -> None:
    """Guards against a rule that pages someone without telling them what to look at,
    or that fires on one bad scrape (no `for:`)."""
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80


def test_promtool_passes_the_rules_and_the_config() -> None:
    """Guards against rules or a configuration Prometheus refuses to load."""
    promtool = tool_or_skip("promtool")
    for argv in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        done = subprocess.run([promtool, *argv], cwd=PROMETHEUS_DIR, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_monitoring_profile_provisions_prometheus_and_grafana_from_the_files() -> None:
    """Guards against `docker compose --profile monitoring up` running a Prometheus with
    another configuration, a Grafana without the data source or the dashboard, or either
    starting with the default stack."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in prometheus["volumes"] + grafana["volumes"]}
    for source in mounts:
        assert source.startswith("./") is (ROOT / source).exists(), source
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./deploy/prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "chat-gateway.yml").read_text())[
        "providers"
    ]
    assert mounts["./deploy/grafana/chat-gateway.json"].startswith(provider["options"]["path"])
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (compose_job,) = [j for j in config["scrape_configs"] if "dns_sd_configs" in j]
    assert compose_job["dns_sd_configs"][0]["names"] == ["gateway1", "gateway2", "gateway3"]
    assert all(j["job_name"].startswith("chat-gateway") for j in config["scrape_configs"])


# --- against Prometheus and a running cluster ------------------------------------------------


class Stack:
    """The cluster, Prometheus scraping it, the application the nodes ask, and what
    the nodes' /metrics export."""

    def __init__(self, nodes: Any, prometheus: PrometheusServer, app: BackendApp) -> None:
        self.nodes = nodes
        self.prometheus = prometheus
        self.app = app
        self.instances = [f"127.0.0.1:{port}" for port in nodes.node_ports]

    def exported(self) -> set[str]:
        """The metric names the nodes export, together (a labelled counter shows once
        counted: the refused handshake was on one node)."""
        names: set[str] = set()
        for index in range(len(self.instances)):
            with urllib.request.urlopen(self.nodes.node_url(index, "/metrics"), timeout=5) as r:
                names |= exported_names(r.read().decode())
        return names


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Three nodes and Redis as `make cluster` starts them, asking an application
    (tests/backend_app.py) at every connect, join and send and posting it their events,
    Prometheus listing them as `make cluster` does, every node scraped, then a little
    chat, scraped too."""
    binary = tool_or_skip("prometheus")
    nginx_or_skip()
    prometheus = PrometheusServer(binary)
    with application().in_thread() as app:
        nodes = Cluster(free_port(), quiet=True,
                                gateway_args=[*NODE_ARGS, *backend_flags(app)],
                                prometheus_targets=prometheus.targets)  # fmt: skip
        try:
            nodes.start()
            prometheus.start()
            stack = Stack(nodes, prometheus, app)
            wait_for(lambda: len([t for t in prometheus.active_targets()
                                  if t["health"] == "up"]) == 3,
                     "all three nodes scraped")  # fmt: skip
            asyncio.run(chat(stack))
            wait_for(lambda: prometheus.query(
                "sum(chat_publish_seconds_count) >= 5 "
                'and sum(chat_handshakes_refused_total{reason="unauthorized"}) >= 1 '
                'and sum(chat_hook_requests_total{hook="join", result="refused"}) >= 1 '
                "and sum(chat_events_lag_seconds_count) >= 5 "
                # settled: the first node up took all 16, and gives one up a round
                "and sum(chat_events_partitions_held) == 16 "
                "and max(chat_events_partitions_held) <= 6"
            ), "the chat scraped, the partitions shared")  # fmt: skip
            # A hook's series is born counted, at its first call on a node: its rate
            # needs another call once Prometheus has the first.
            asyncio.run(each_hook_again(stack))
            wait_for(lambda: len(prometheus.query(
                "sum by (hook) (rate(chat_hook_seconds_count[20s])) > 0"
            )) == len(HOOKS), "each hook's rate")  # fmt: skip
            yield stack
        finally:
            nodes.stop()
            prometheus.stop()


def application() -> BackendApp:
    """The application: it lets in everyone as the name they asked, but for a name too
    long for the chat ("no such user"), refuses everyone the room CLOSED_ROOM, lets
    every message through and takes every event."""

    def connect(request: Received) -> Reply:
        name = request.json()["name"] or ""
        return Reply(200, {"name": name}) if len(name) <= 32 else Reply(403, {"message": "no"})

    def join(request: Received) -> Reply:
        refused = request.json()["room"] == CLOSED_ROOM
        return Reply(403, {"message": "closed"}) if refused else Reply(200, {})

    app = BackendApp()
    app.answer("/connect", handler=connect)
    app.answer("/join", handler=join)
    return app


def backend_flags(app: BackendApp) -> list[str]:
    """The nodes' flags for `app`: every hook and the events."""
    flags = ["--backend-secret", app.secret, "--events-url", app.url("/events")]
    for hook in HOOKS:
        flags += [f"--{hook}-hook-url", app.url(f"/{hook}")]
    return flags


async def chat(stack: Stack) -> None:
    """A little of everything the dashboard shows: two modes on three nodes, room and
    direct messages (events for the application), an error, a handshake and a join the
    application refuses, a refused frame, a broken request."""
    ports = stack.nodes.node_ports
    async with aiohttp.ClientSession() as http:

        async def join(index: int, name: str) -> JsonPeer:
            url = f"ws://127.0.0.1:{ports[index]}/ws"
            ws = await http.ws_connect(url, params={"name": name}, protocols=(JSON_PROTOCOL,))
            peer = JsonPeer(ws)
            await peer.expect("welcome")
            await peer.expect("subscribed", room="lobby")
            return peer

        alice, bob = await join(0, "alice"), await join(1, "bob")
        text = await http.ws_connect(f"ws://127.0.0.1:{ports[2]}/ws", params={"name": "carol"})
        for n in range(5):
            ack = await alice.request("send", room="lobby", text=f"hello {n}")
            await bob.expect("message", offset=ack["offset"])
        assert (await bob.request("dm", to="alice", text="hi"))["type"] == "ack"
        refused = await alice.request("send", room="elsewhere", text="not joined")
        assert refused["type"] == "error"
        closed = await alice.request("join", room=CLOSED_ROOM)
        assert (closed["type"], closed.get("code")) == ("error", "forbidden"), closed
        big = await join(2, "big")
        await big.ws.send_str("x" * 70_000)  # over --max-frame-bytes: closed 1009
        assert await big.close_code() == 1009
        url = f"ws://127.0.0.1:{ports[1]}/ws"
        long_name = {"name": "n" * 200}
        nameless = await http.ws_connect(url, params=long_name, protocols=(JSON_PROTOCOL,))
        assert (await JsonPeer(nameless).expect("error"))["code"] == "unauthorized"
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=5) as sock:
            sock.sendall(b"NOT HTTP\r\n\r\n")  # answered 400 (bad_request)
            sock.recv(1024)
        for ws in (alice.ws, bob.ws, text):
            await ws.close()


async def each_hook_again(stack: Stack) -> None:
    """Connect, join and send once more on the first node, where each hook was asked."""
    url = f"ws://127.0.0.1:{stack.nodes.node_ports[0]}/ws"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, params={"name": "dave"}, protocols=(JSON_PROTOCOL,))
        dave = JsonPeer(ws)
        await dave.expect("subscribed", room="lobby")
        assert (await dave.request("send", room="lobby", text="again"))["type"] == "ack"
        await ws.close()


@pytest.mark.timeout(180)
def test_every_query_names_only_metrics_the_nodes_export(stack: Stack) -> None:
    """Guards against a panel or a rule on a metric that does not exist (misspelt, or
    renamed in gateway/metrics.py): Prometheus answers such a query with nothing, and
    the panel stays empty or the alert never fires, silently."""
    exported = stack.exported() | PROMETHEUS_OWN
    board = dashboard()
    queries = [*panel_queries(board), *alert_queries()]
    named = {q.source: metric_names(q.expr) for q in queries}
    named |= {f"variable {v}": {m} for v, m, _ in variable_queries(board)}
    for source, names in named.items():
        assert names, f"{source}: no metric found in it"
        assert names <= exported, f"{source}: not exported: {names - exported}"
    for name in set().union(*named.values()):
        assert stack.prometheus.api("series", **{"match[]": name}), f"{name}: no series"


@pytest.mark.timeout(180)
def test_every_panel_query_returns_data(stack: Stack) -> None:
    """Guards against a panel that parses but shows nothing (a wrong label, an
    aggregation that drops every series, a quantile of nothing): each query, as Grafana
    sends it with the node variable at All, returns a value that is a number."""
    board = dashboard()
    for query in panel_queries(board):

        def numbers(query: Query = query) -> list[float]:
            if query.instant:
                values = [s["value"] for s in stack.prometheus.query(query.promql)]
            else:
                series = stack.prometheus.query_range(query.promql, 120)
                values = [v for s in series for v in s["values"]]
            return [float(v) for _, v in values if not math.isnan(float(v))]

        # A series born counted (an error code's first error) needs two scrapes for a rate.
        wait_for(numbers, f"{query.source}: data", timeout=10)
    for variable, metric, label in variable_queries(board):
        found = stack.prometheus.api(f"label/{label}/values", **{"match[]": metric})
        assert sorted(found) == sorted(stack.instances), variable


@pytest.mark.timeout(180)
def test_every_alert_rule_parses_loads_healthy_and_stays_quiet(stack: Stack) -> None:
    """Guards against a rule Prometheus cannot evaluate, and against thresholds that
    page on a healthy cluster."""
    for query in alert_queries():
        stack.prometheus.query(query.promql)  # raises when it does not parse
    expected = {rule["alert"] for rule in alert_rules()}

    def evaluated() -> list[dict[str, Any]]:
        rules = stack.prometheus.rules()
        return [r for r in rules if r["type"] == "alerting" and r["lastEvaluation"] > "2000"]

    loaded = wait_for(evaluated, "every rule evaluated")
    assert {r["name"] for r in loaded} == expected
    for rule in loaded:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))

    # A moment of a healthy cluster may make a rule pending (a partition between two
    # nodes as they share them out): what must hold is that every rule goes quiet.
    def loud() -> list[tuple[str, Any]]:
        return [(r["name"], r["alerts"]) for r in evaluated() if r["state"] != "inactive"]

    try:
        wait_for(lambda: not loud(), "every rule inactive", timeout=90)
    except AssertionError as error:
        raise AssertionError(loud()) from error


def active(stack: Stack, alert: str) -> set[str]:
    """The instances `alert` is pending or firing for."""
    return {a["labels"].get("instance", "") for r in stack.prometheus.rules()
            if r["type"] == "alerting" and r["name"] == alert for a in r["alerts"]}  # fmt: skip


@pytest.mark.timeout(180)
def test_the_hook_alert_goes_off_when_the_application_fails_a_hook(stack: Stack) -> None:
    """Guards against a hook rule that watches the wrong thing: the application
    answering its publish hook 503, the sends on a node are turned away `unavailable`,
    and ChatHookUnavailable goes pending for that node."""
    stack.app.answer("/publish", 503)
    unavailable = 'chat_hook_requests_total{hook="publish", result="unavailable"}'
    try:
        asyncio.run(send_turned_away(stack))
        # Born counted at the first: its rate needs another once Prometheus has it.
        wait_for(lambda: stack.prometheus.query(unavailable), "the first turned away scraped")
        asyncio.run(send_turned_away(stack))
        first = stack.instances[0]
        wait_for(lambda: active(stack, "ChatHookUnavailable") == {first}, "ChatHookUnavailable")
    finally:
        stack.app.answer("/publish", 200, {})


async def send_turned_away(stack: Stack) -> None:
    """A send on the first node that the application does not answer as it should."""
    url = f"ws://127.0.0.1:{stack.nodes.node_ports[0]}/ws"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, params={"name": "erin"}, protocols=(JSON_PROTOCOL,))
        erin = JsonPeer(ws)
        await erin.expect("subscribed", room="lobby")
        answer = await erin.request("send", room="lobby", text="lost")
        assert (answer["type"], answer.get("code")) == ("error", "unavailable"), answer
        await ws.close()


@pytest.mark.timeout(180)
def test_alerts_go_off_for_a_dead_node_and_a_lost_redis(stack: Stack) -> None:
    """Guards against rules that watch the wrong thing: a node killed outright is seen
    as not scraped (and reaped by a survivor), and a Redis gone as every node not ready
    and its Redis unavailable. (Last in this file: it breaks the cluster.)"""
    dead = stack.instances[2]
    stack.nodes.nodes[2].signal(signal.SIGKILL)
    wait_for(lambda: dead in active(stack, "ChatNodeNotScraped"), "ChatNodeNotScraped")
    wait_for(lambda: stack.prometheus.query("sum(chat_nodes_reaped_total) >= 1"), "a reap")
    stack.nodes.redis.processes[0].signal(signal.SIGKILL)
    alive = set(stack.instances[:2])
    for alert in ("ChatRedisUnavailable", "ChatNodeNotReady"):
        wait_for(lambda alert=alert: active(stack, alert) == alive, alert)
    wait_for(lambda: active(stack, "ChatNoNodeReady") == {""}, "ChatNoNodeReady")
    assert stack.prometheus.query("sum(chat_ready) == 0"), "nodes still ready without Redis"


def test_dashboard_file_is_the_one_documented() -> None:
    """Guards against docs that point at a dashboard or rules file that moved."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    for path in (DASHBOARD, PROMETHEUS_DIR / "alerts.yml", PROMETHEUS_DIR / "prometheus.yml"):
        assert str(Path(path).relative_to(ROOT)) in operations
    assert "docker compose --profile monitoring up" in operations
