"""The history of a campaign: what each client saw, and the faults, with their times.

Times are seconds since the campaign started (a monotonic clock). A client's records
are in the order it saw them, the application's deliveries in the order they arrived;
the checker reads nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def parse_offset(offset: str) -> tuple[str, int] | None:
    """`EPOCH-SEQ` as (epoch, seq); None for anything else."""
    epoch, _, seq = offset.rpartition("-")
    return (epoch, int(seq)) if epoch and seq.isdigit() else None


@dataclass(frozen=True)
class Violation:
    """One thing the checker found wrong: `kind`, when (`t`), who, and what."""

    kind: str
    t: float
    client: str
    detail: str


@dataclass(frozen=True)
class Record:
    """One thing a client saw or did.

    kind: `connected` (node), `subscribed` (room, offset, recovered), `message` (room,
    offset, sender, msg_id), `acked` (room, offset, msg_id), `closed` (code); and the
    campaign's own `posted` (room, offset, sender, msg_id: the message's text), a
    message it stored through the REST API.
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


@dataclass(frozen=True)
class Delivered:
    """One event the application received (`t`: when), as it was POSTed."""

    t: float
    event: dict[str, Any]


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
    deliveries: list[Delivered] = field(default_factory=list)  # the application's events
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
