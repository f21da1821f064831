"""The history of a campaign: what each client saw, and the faults, with their times.

Times are seconds since the campaign started (a monotonic clock). A client's records
are in the order it saw them; the checker reads nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Record:
    """One thing a client saw or did.

    kind: `connected` (node), `subscribed` (room, offset, recovered), `message` (room,
    offset, sender, msg_id), `acked` (room, offset, msg_id), `closed` (code).
    """

    t: float
    client: str
    kind: str
    room: str = ""
    offset: str | None = None
    recovered: bool = False
    sender: str = ""
    msg_id: str = ""
    node: str = ""
    code: int | None = None


@dataclass
class Fault:
    """One fault the nemesis injected: `kind` on `target`, from `start` to `end`."""

    start: float
    kind: str
    target: str
    end: float | None = None

    def describe(self) -> str:
        end = f"{self.end:.1f}" if self.end is not None else "..."
        return f"{self.kind} {self.target} [{self.start:.1f}-{end}s]"


@dataclass
class History:
    """Everything recorded in one campaign."""

    records: list[Record] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.started

    def add(self, client: str, kind: str, **fields: object) -> None:
        self.records.append(Record(self.now(), client, kind, **fields))  # type: ignore[arg-type]

    def fault(self, kind: str, target: str) -> Fault:
        """Record a fault beginning now; set its `end` when it is healed."""
        fault = Fault(self.now(), kind, target)
        self.faults.append(fault)
        return fault

    def faults_around(self, t: float, before: float = 15.0, after: float = 5.0) -> list[Fault]:
        """The faults active at `t` or begun within `before` seconds before it or `after`
        seconds after it."""
        return [
            f
            for f in self.faults
            if t - before <= f.start <= t + after
            or (f.start <= t and (f.end is None or f.end >= t))
        ]
