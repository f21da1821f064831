"""The bench's report: medians and ranges over the repetitions, ratios to python-socketio.

Input is every run's outcome ({"rep", "scenario", "peer", "outcome"}); output is one
JSON document (everything, runs included) and a markdown page with one table per
scenario. A ratio is taken within one repetition (the two servers ran minutes apart
at most, on the same machine), then its median and range over the repetitions. A
scenario at scale (S3 with 18,000 connections, ...) also has its ratio to the smaller
one (bench.params.SCALE_BASE) in the same repetition, and says whether what should stay
flat did (within FLAT).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench.params import GATEWAY_ONLY, SCALE_BASE, SHORT, TITLES

BASELINE = "socketio"
PEER_NAMES = {"gateway": "gateway", "socketio": "python-socketio", "node": "Node socket.io"}
# figure -> (label, format); the tables show them in this order
FIGURES: dict[str, tuple[str, str]] = {
    "deliveries_per_s": ("deliveries/s", ",.0f"),
    "messages_per_s": ("messages/s (acked)", ",.0f"),
    "server_cpu_us_per_delivery": ("server CPU µs/delivery", ".1f"),
    "server_cpu_us_per_message": ("server CPU µs/message", ",.0f"),
    "redis_cpu_us_per_message": ("Redis CPU µs/message", ".1f"),
    "server_cpu_share": ("server CPU, cores busy", ".2f"),
    "p50_ms": ("p50 latency ms", ".2f"),
    "p99_ms": ("p99 latency ms", ".2f"),
    "connections_per_s": ("connections/s", ",.0f"),
    "rss_kib_per_connection": ("RSS KiB/connection", ".1f"),
    "server_cpu_us_per_connection": ("server CPU µs/connection", ",.0f"),
    "redis_cpu_us_per_connection": ("Redis CPU µs/connection", ",.0f"),
    "resume_all_s": ("seconds until all resumed", ".2f"),
    "resume_p50_s": ("p50 seconds to resume", ".2f"),
    "messages_lost": ("messages lost", ".0f"),
    "server_cpu_us_per_resume": ("server CPU µs/resume", ",.0f"),
    "redis_cpu_us_per_resume": ("Redis CPU µs/resume", ",.0f"),
    "delivery_ratio": ("delivery ratio", ".4f"),
    "sends_refused": ("sends refused (unavailable)", ",.0f"),
    "connect_s": ("seconds to connect everyone", ".1f"),
    "loadgen_cpu_s": ("load-generator CPU s", ".2f"),
    "loadgen_core_share": ("load-generator core busy", ".0%"),
}
SATURATED = 0.9  # a load generator this busy may have been the bottleneck
FLAT = 0.10  # at scale, a per-connection cost within 10 % of the smaller run's is flat
FLAT_FIGURES = {"s3big": ("server_cpu_us_per_connection", "rss_kib_per_connection")}
# (S5's CPU per resume is not expected flat: a client that waits longer to resume has
# more to replay)


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min and max, or None without values."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _figure(run: dict[str, Any], name: str) -> float | None:
    value = run["outcome"].get("figures", {}).get(name)
    return float(value) if isinstance(value, int | float) else None


def _ratios(
    mine: list[dict[str, Any]], base: dict[int, dict[str, Any]], name: str
) -> dict[str, float] | None:
    """The spread of `name`'s ratio, each run to the `base` run of its repetition."""
    pairs = [(_figure(r, name), _figure(base[r["rep"]], name)) for r in mine if r["rep"] in base]
    return spread([a / b for a, b in pairs if a is not None and b])


def _runs_of(runs: list[dict[str, Any]], scenario: str, peer: str) -> dict[int, dict[str, Any]]:
    """`peer`'s measured runs of `scenario`, by repetition."""
    return {
        r["rep"]: r
        for r in runs
        if r["scenario"] == scenario and r["peer"] == peer and "skipped" not in r["outcome"]
    }


def summarize(
    runs: list[dict[str, Any]], peers: Sequence[str], scenarios: Sequence[str]
) -> dict[str, Any]:
    """Per scenario and peer: each figure's spread, its ratio's spread, the validity."""
    out: dict[str, Any] = {}
    for scenario in scenarios:
        table: dict[str, Any] = {}
        for peer in peers:
            mine = [r for r in runs if r["scenario"] == scenario and r["peer"] == peer]
            if not mine:
                continue
            skipped = [r["outcome"]["skipped"] for r in mine if "skipped" in r["outcome"]]
            if skipped:
                table[peer] = {"skipped": skipped[0]}
                continue
            base = _runs_of(runs, scenario, BASELINE)
            smaller = _runs_of(runs, SCALE_BASE.get(scenario, ""), peer)
            figures, ratios, scale = {}, {}, {}
            for name in FIGURES:
                values = [v for r in mine if (v := _figure(r, name)) is not None]
                if not values:
                    continue
                figures[name] = spread(values)
                ratios[name] = _ratios(mine, base, name)
                if smaller:
                    scale[name] = _ratios(mine, smaller, name)
            invalid = [r["rep"] for r in mine if not r["outcome"].get("valid")]
            table[peer] = {
                "figures": figures,
                "ratio_to_socketio": ratios,
                **({"ratio_to_smaller": scale} if scale else {}),
                "runs": len(mine),
                "invalid_reps": invalid,
                "problems": [p for r in mine for p in r["outcome"].get("problems", [])][:10],
                "notes": sorted({n for r in mine for n in r["outcome"].get("notes", [])}),
            }
        out[scenario] = table
    return out


def _cell(s: dict[str, float] | None, fmt: str) -> str:
    if s is None:
        return ".."
    if s["min"] == s["max"]:
        return format(s["median"], fmt)
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}..{s['max']:{fmt}})"


def _ratio(s: dict[str, float] | None) -> str:
    return ".." if s is None else _cell(s, ".2f") + "x"


def markdown(doc: dict[str, Any]) -> str:
    """The page: the machine and the run, then one table per scenario."""
    m, run = doc["machine"], doc["run"]
    peers = [p for p in run["peers"]]
    lines = [
        "# chat-gateway bench",
        "",
        f"- machine: {m['cores']} cores, {m['cpu_model']}, {m['memory_gib']} GiB; load "
        f"average at start {' '.join(str(x) for x in m['load_average_at_start'])}; Linux "
        f"{m['kernel']}, Python {m['python']}, {m['redis'] or 'no redis-server'}, "
        f"Node {m['node'] or 'absent'}",
        f"- pinning: {run['pinning']}",
        f"- {run['repetitions']} repetition{'s' if run['repetitions'] != 1 else ''}, "
        f"interleaved ({', '.join(peers)}); "
        f"{run['nodes']} nodes per server, {run['broker']}; took {run['seconds']:.0f} s",
        f"- gateway nodes run with {run['gateway_flags']}",
        f"- the load generator: one process per run, raw WebSocket clients on "
        f"{run['event_loop']}; sizes: " + ", ".join(f"{k} {v:g}" for k, v in run["sizes"].items()),
        "- cells: median (min..max) over the repetitions; ratios are to python-socketio in "
        "the same repetition; server CPU is every node's /proc utime+stime summed, Redis "
        "apart",
    ]
    lines += [f"- {note}" for note in run["notes"]]
    for scenario, table in doc["summary"].items():
        lines += ["", f"## {TITLES[scenario].format(**run['sizes'])}", ""]
        if scenario in GATEWAY_ONLY:
            lines.append(f"({GATEWAY_ONLY[scenario]})")
            lines.append("")
        shown = [p for p in peers if p in table]
        measured = [p for p in shown if "skipped" not in table[p]]
        for p in shown:
            if "skipped" in table[p] and scenario not in GATEWAY_ONLY:  # said once above
                lines += [f"{PEER_NAMES[p]}: skipped, {table[p]['skipped']}", ""]
        if not measured:
            continue
        ratio_peers = [p for p in measured if p != BASELINE and BASELINE in measured]
        scaled = [p for p in measured if "ratio_to_smaller" in table[p]]
        smaller = SHORT.get(SCALE_BASE.get(scenario, ""), "")
        head = [
            "figure",
            *(PEER_NAMES[p] for p in measured),
            *(f"{PEER_NAMES[p]} / python-socketio" for p in ratio_peers),
            *(f"{PEER_NAMES[p]} / {smaller}" for p in scaled),
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, (label, fmt) in FIGURES.items():
            if not any(name in table[p]["figures"] for p in measured):
                continue
            cells = [_cell(table[p]["figures"].get(name), fmt) for p in measured]
            cells += [_ratio(table[p]["ratio_to_socketio"].get(name)) for p in ratio_peers]
            cells += [_ratio(table[p]["ratio_to_smaller"].get(name)) for p in scaled]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        verdicts = []
        for p in measured:
            bad = table[p]["invalid_reps"]
            verdicts.append(
                f"INVALID in rep {bad}" if bad else f"valid {table[p]['runs']}/{table[p]['runs']}"
            )
        extra = len(ratio_peers) + len(scaled)
        lines.append("| correctness | " + " | ".join(verdicts) + " |" + " |" * extra)
        lines += [f for p in scaled if (f := _flatness(scenario, PEER_NAMES[p], table[p]))]
        for p in measured:
            share = table[p]["figures"].get("loadgen_core_share")
            if share and share["max"] >= SATURATED:
                lines.append(
                    f"\n{PEER_NAMES[p]}: the load generator's core was "
                    f"{share['max']:.0%} busy: it may have been the bottleneck."
                )
            for problem in table[p]["problems"][:3]:
                lines.append(f"\n{PEER_NAMES[p]}: {problem}")
        notes = sorted({n for p in measured for n in table[p]["notes"]})
        lines += [""] + [f"_{n}_" for n in notes]
    return "\n".join(lines) + "\n"


def _flatness(scenario: str, name: str, entry: dict[str, Any]) -> str:
    """Whether `scenario`'s per-connection costs stayed within FLAT of the smaller run's."""
    smaller = SHORT[SCALE_BASE[scenario]]
    said = []
    for figure in FLAT_FIGURES.get(scenario, ()):
        ratio = entry["ratio_to_smaller"].get(figure)
        if ratio is None:
            continue
        verdict = "flat"
        if ratio["median"] > 1 + FLAT:
            verdict = f"NOT flat (over {FLAT:.0%} above {smaller})"
        elif ratio["median"] < 1 - FLAT:
            verdict = f"cheaper than {smaller}"
        said.append(f"{FIGURES[figure][0]} {ratio['median']:.2f}x {smaller}: {verdict}")
    return f"\n{name} at scale: " + "; ".join(said) + "." if said else ""
