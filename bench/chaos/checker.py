"""The checker: reads a campaign's whole history and names every violation.

- Lost: a message acked to its sender that a client in its room never got. A client is
  in its room from its first `subscribed` on: it never leaves, and each reconnect asks
  for everything after the newest offset it saw (`since`), so it must get every message
  stored after that first `subscribed.offset`, live or in a replay. "After" is exact:
  an offset is `EPOCH-SEQ` (the gateway's own form), later in the same epoch means a
  higher SEQ; a message in another epoch (history lost) counts when it was acked after
  the client's first `subscribed`. A resume answered `recovered: false` is named beside
  the messages it lost.
- Duplicated: a client got the same message (sender and `id`) more than once, or one
  message was stored under two offsets (an `ack` offset that is not the one delivered).
- Reordered: a client got a message whose offset is not after the one before it in
  the same epoch; every client then sees each room's messages in the stored order.

What the application received is checked by bench/chaos/event_checker.py; its verdict
joins this one (`Verdict.events`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from bench.chaos.event_checker import EventVerdict
from bench.chaos.history import History, Record, Violation, parse_offset

Key = tuple[str, str]  # (sender, msg_id): one message


@dataclass
class Verdict:
    """What the checker found."""

    faults: int = 0
    acked: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    presence: list[str] = field(default_factory=list)  # divergences found at the end
    violations: list[Violation] = field(default_factory=list)
    events: EventVerdict | None = None  # the application's, when it was checked

    @property
    def ok(self) -> bool:
        if self.events is not None and not self.events.ok:
            return False
        return not (self.lost or self.duplicated or self.reordered or self.presence)

    def line(self) -> str:
        state = "diverged" if self.presence else "converged"
        events = f"; {self.events.line()}" if self.events is not None else ""
        return (
            f"chaos: {self.faults} faults, {self.acked} acked, {self.lost} lost, "
            f"{self.duplicated} duplicated, {self.reordered} reordered, presence {state}" + events
        )


@dataclass
class Acked:
    """Where and when a message was acked."""

    room: str
    offset: str
    t: float


def expected(message: Acked, first: Record) -> bool:
    """Whether the client whose first `subscribed` is `first` must get `message`: stored
    after `first.offset` (None: the room was empty), or, in another epoch, acked after
    that `subscribed`."""
    if first.offset is None:
        return True
    mine, theirs = parse_offset(message.offset), parse_offset(first.offset)
    if mine is None or theirs is None:
        return False
    if mine[0] != theirs[0]:
        return message.t > first.t
    return mine[1] > theirs[1]


def check(history: History, rooms: dict[str, str], presence: list[str]) -> Verdict:
    """The verdict on `history`; `rooms` maps each client to its room, `presence` lists
    the divergences the campaign found at the end."""
    verdict = Verdict(faults=len(history.faults), presence=list(presence))
    by_client: dict[str, list[Record]] = defaultdict(list)
    for record in history.records:
        by_client[record.client].append(record)
    acked: dict[Key, Acked] = {}
    for record in history.records:
        if record.kind == "acked" and record.offset is not None:
            key = (record.client, record.msg_id)
            if key in acked and acked[key].offset != record.offset:
                _add(
                    verdict,
                    "duplicated",
                    record,
                    f"{_name(key)} acked at {acked[key].offset} "
                    f"and again at {record.offset}: stored twice",
                )
                verdict.duplicated += 1
            acked.setdefault(key, Acked(record.room, record.offset, record.t))
    verdict.acked = len(acked)
    lost: set[Key] = set()
    for client, records in by_client.items():
        _check_client(verdict, client, rooms.get(client, ""), records, acked, lost)
    verdict.lost = len(lost)
    return verdict


def _check_client(
    verdict: Verdict,
    client: str,
    room: str,
    records: list[Record],
    acked: dict[Key, Acked],
    lost: set[Key],
) -> None:
    subscribes = [r for r in records if r.kind == "subscribed"]
    if not subscribes:
        return
    first = subscribes[0]
    got: dict[Key, Record] = {}
    newest: dict[str, int] = {}  # epoch -> the highest seq seen
    for record in records:
        if record.kind != "message":
            continue
        key = (record.sender, record.msg_id)
        if key in got:
            verdict.duplicated += 1
            _add(
                verdict,
                "duplicated",
                record,
                f"{client} got {_name(key)} again at {record.offset} "
                f"(first at {got[key].offset}, t={got[key].t:.1f}s)",
            )
            continue
        got[key] = record
        known = acked.get(key)
        if known is not None and record.offset != known.offset:
            verdict.duplicated += 1
            _add(
                verdict,
                "duplicated",
                record,
                f"{client} got {_name(key)} at {record.offset}, "
                f"acked at {known.offset}: stored twice",
            )
        parsed = parse_offset(record.offset or "")
        if parsed is None:
            continue
        epoch, seq = parsed
        if epoch in newest and seq <= newest[epoch]:
            verdict.reordered += 1
            _add(
                verdict,
                "reordered",
                record,
                f"{client} got {_name(key)} at {record.offset} after {epoch}-{newest[epoch]}",
            )
        newest[epoch] = max(seq, newest.get(epoch, seq))
    unrecovered = [r for r in subscribes[1:] if not r.recovered]
    for key, message in acked.items():
        if message.room != room or key in got or not expected(message, first):
            continue
        lost.add(key)
        resumes = ", ".join(f"t={r.t:.1f}s" for r in unrecovered) or "none"
        nodes = [r for r in records if r.kind == "connected" and r.t <= message.t]
        where = f"on {nodes[-1].node} since t={nodes[-1].t:.1f}s" if nodes else "not connected"
        verdict.violations.append(
            Violation(
                "lost",
                message.t,
                client,
                f"{_name(key)} in {room} at {message.offset} (acked t={message.t:.1f}s) never "
                f"reached {client} (in {room} since t={first.t:.1f}s, {where} when it was "
                f"acked; resumes with recovered: false: {resumes})",
            )
        )


def _add(verdict: Verdict, kind: str, record: Record, detail: str) -> None:
    verdict.violations.append(Violation(kind, record.t, record.client, detail))


def _name(key: Key) -> str:
    return f"{key[0]}#{key[1]}"
