"""The figures of one fuzz run, whether it passed, and the table `make fuzz` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.fuzz.config import MIB, FuzzConfig, Outcome


@dataclass
class FuzzReport:
    """The figures of one run."""

    config: FuzzConfig
    frames: int = 0
    connections: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)  # connections that ended wrongly
    anomaly_count: int = 0
    room_flood_subscribed: list[int] = field(default_factory=list)  # rooms each flood got
    rooms_at_peak: int = 0  # rooms /api/rooms listed while the floods held theirs
    slow_consumers_closed: int = 0
    honest_sent: int = 0
    honest_received: int = 0
    honest_lost: int = 0
    honest_duplicated: int = 0
    healthz_checks: int = 0
    healthz_failures: int = 0
    node_exited: bool = False
    healthz_after: int | None = None
    rss_start: int = 0  # bytes: the node just started
    rss_before: int = 0  # bytes: the honest users connected, before any fuzzing
    rss_peak: int = 0  # VmHWM
    rss_rounds: list[int] = field(default_factory=list)  # bytes: settled after each round
    rss_after: int = 0  # bytes: every connection closed and the node settled
    rss_later: int = 0  # bytes: `linger` seconds after that
    settled: bool = False
    connections_left: float = -1.0
    rooms_left: list[str] = field(default_factory=list)
    node_tracebacks: list[str] = field(default_factory=list)  # every one in the log
    node_failures: list[str] = field(default_factory=list)  # those not caused by the client
    node_warnings: Counter[str] = field(default_factory=Counter)  # its WARNING+ lines, grouped
    honest_missing: list[str] = field(default_factory=list)  # the lost messages (a few)
    honest_refused: list[str] = field(default_factory=list)  # error answers they were given
    time_capped: bool = False
    seconds: float = 0.0

    @property
    def crashes(self) -> int:
        return int(self.node_exited) + self.healthz_failures

    @property
    def ok(self) -> bool:
        return (
            self.crashes == 0
            and self.healthz_after == 200
            and self.honest_lost == 0
            and not self.honest_refused
            and self.anomaly_count == 0
            and not self.node_failures
            and self.settled
            and not self.time_capped
        )

    def anomaly(self, text: str) -> None:
        """Count a connection that ended wrongly; keep the first 30 for the report."""
        self.anomaly_count += 1
        if len(self.anomalies) < 30:
            self.anomalies.append(text)


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def table(report: FuzzReport) -> str:
    config = report.config
    broker = f"redis ({config.redis_url})" if config.redis_url else "in-process"
    rows = [
        ("broker", broker),
        ("seed", str(config.seed)),
        ("seconds", f"{report.seconds:.1f}" + (" (TIME CAP REACHED)" * report.time_capped)),
        ("frames tried", f"{report.frames:,}"),
        ("connections opened", f"{report.connections:,}"),
        ("crashes (exit or /healthz failed)",
         f"{report.crashes} ({report.healthz_checks} health checks)"),
        ("honest messages sent / received / lost",
         f"{report.honest_sent} / {report.honest_received} / {report.honest_lost}"),
        ("honest messages refused (error answers)", str(len(report.honest_refused))),
        ("anomalies (wrong endings)", str(report.anomaly_count)),
        ("tracebacks in the node's log",
         f"{len(report.node_tracebacks)} ({len(report.node_failures)} failures of the node)"),
        ("join floods: rooms granted each", _spread(report.room_flood_subscribed)),
        ("rooms at once at the peak", f"{report.rooms_at_peak:,}"),
        ("slow readers closed (1008)", str(report.slow_consumers_closed)),
        ("node RSS at start", _mib(report.rss_start)),
        ("node RSS before the fuzz", _mib(report.rss_before)),
        ("node RSS at peak (VmHWM)", _mib(report.rss_peak)),
        ("node RSS after each round (settled)", ", ".join(_mib(n) for n in report.rss_rounds)),
        ("node RSS after (all closed, settled)", _mib(report.rss_after)),
        ("after - before", _mib(report.rss_after - report.rss_before)),
        (f"node RSS {config.linger:g} s later (aiohttp's timers out)",
         _mib(report.rss_later) if config.linger else "-"),
        ("connections left", f"{report.connections_left:g}"),
        ("rooms left in /api/rooms", str(len(report.rooms_left))),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"how connections ended: {_counts(report.outcomes)}")
    lines.append(f"error answers: {_counts(report.error_codes)}")
    if report.honest_missing:
        lines.append(f"honest messages lost: {report.honest_missing}")
    lines.append("the node's warnings and errors:")
    lines += [f"  {n:6,}  {text}" for text, n in report.node_warnings.most_common(25)]
    for anomaly in report.anomalies:
        lines.append(f"ANOMALY {anomaly}")
    for traceback in report.node_failures[:5]:
        lines.append(f"NODE FAILURE\n{traceback}")
    return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counter.most_common())


def _spread(values: list[int]) -> str:
    if not values:
        return "-"
    return f"{min(values)} to {max(values)} (of {len(values)} floods)"
