"""The dashboard's and the alert rules' queries as the tests read them: every PromQL
expression of deploy/grafana/chat-gateway.json and deploy/prometheus/alerts.yml, the
Grafana variables put in as Grafana would, the metric names each one selects; and the
tests' bounded wait on Prometheus."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from tooling.processes import ROOT

WAIT = 30.0  # seconds, at most, for Prometheus to see a change (it scrapes every 1 s)
DASHBOARD = ROOT / "deploy" / "grafana" / "chat-gateway.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# What Grafana puts in for its variables: the node variable's "All" (its allValue), and
# a rate interval of a few scrapes of the tests' Prometheus (1 s).
GRAFANA_VALUES = {
    "$__rate_interval": "20s",
    "$__interval": "1s",
    "$__range": "2m",
    "$instance": ".*",
}
LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*(\w+)\)$")

# What is left of an expression once strings, label matchers, ranges and label lists
# are cut out: identifiers are then metric names, functions, keywords and numbers.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "by", "without"}


@dataclass(frozen=True)
class Query:
    """One expression: where it comes from (panel or alert) and its PromQL."""

    source: str
    expr: str
    instant: bool = False

    @property
    def promql(self) -> str:
        """The expression with Grafana's variables put in; no `$` left."""
        text = self.expr
        for name in sorted(GRAFANA_VALUES, key=len, reverse=True):
            text = text.replace(name, GRAFANA_VALUES[name])
        assert "$" not in text, f"{self.source}: a variable the tests do not know: {text}"
        return text


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (functions, keywords and label names left out)."""
    text = _STRINGS.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call is None and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that show data (every panel but the rows)."""
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def panel_queries(board: dict[str, Any]) -> list[Query]:
    """Every target of every panel."""
    return [
        Query(f"panel {panel['title']!r} {target['refId']}", target["expr"], target["instant"])
        for panel in panels(board)
        for target in panel["targets"]
    ]


def variable_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable, metric, label) of each `label_values(metric, label)` query variable."""
    found = []
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, f"variable {variable['name']}: not label_values(metric, label)"
            found.append((variable["name"], match.group(1), match.group(2)))
    return found


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/alerts.yml."""
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_queries() -> list[Query]:
    return [Query(f"alert {rule['alert']}", rule["expr"], instant=True) for rule in alert_rules()]


def exported_names(metrics_text: str) -> set[str]:
    """The sample names a /metrics page has or declares (`chat_x_total`, `chat_y_bucket`,
    ...): a labelled counter counted nowhere yet has no sample, but its `# TYPE` line."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            names |= {family + suffix for suffix in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
    return names


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `condition` until it returns something true; fail naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.25)  # Prometheus changes once per scrape: a bounded poll


def lost(given: Any, kept: Any, path: str) -> list[str]:
    """The paths in `given` that `kept` lacks or holds with another value."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path]
        missing = [f"{path}.{key}" for key in given if key not in kept]
        return missing + [
            p for key, value in given.items() if key in kept
            for p in lost(value, kept[key], f"{path}.{key}")
        ]  # fmt: skip
    if isinstance(given, list):
        if not isinstance(kept, list) or len(given) != len(kept):
            return [path]
        return [p for i, pair in enumerate(zip(given, kept, strict=True))
                for p in lost(*pair, f"{path}[{i}]")]  # fmt: skip
    return [] if given == kept else [f"{path}: {given!r} became {kept!r}"]
