"""The bench's correctness check: every message once, in order, at every receiver.

Each message's text carries a tag `#SENDER:SEQ:SENT_NS#`: the sending client, its own
sequence number (0, 1, 2, ... per sender) and the send time (time.monotonic_ns() in the
load generator, which runs every client, so one clock). A receiver feeds each tag it
gets to the checker, which counts duplicates, reorderings and, at the end, losses
against what each sender sent (less what the server refused with `unavailable`). A run
with any of the three is INVALID.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

TAG = re.compile(rb"#(\d+):(\d+):(\d+)#")


def message_text(sender: int, seq: int, size: int) -> str:
    """A message text of about `size` characters: the tag, padded with 'x'."""
    tag = f"#{sender}:{seq}:{time.monotonic_ns()}#"
    return tag + "x" * max(0, size - len(tag))


def parse_tag(payload: bytes) -> tuple[int, int, int] | None:
    """(sender, seq, sent_ns) from a received frame's bytes; None when it has no tag."""
    match = TAG.search(payload)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


@dataclass
class Stream:
    """What one receiver got from one sender so far."""

    next_seq: int = 0  # one past the highest sequence number seen
    missing: set[int] = field(default_factory=set)  # below next_seq, not seen yet

    @property
    def unique(self) -> int:
        return self.next_seq - len(self.missing)


@dataclass
class Verdict:
    """The check's result over a whole run."""

    received: int = 0  # unique deliveries
    expected: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    unexpected: int = 0  # received, though refused or never answered to its sender

    @property
    def valid(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.reordered == 0

    @property
    def ratio(self) -> float:
        return self.received / self.expected if self.expected else 1.0

    def problems(self) -> list[str]:
        names = ("lost", "duplicates", "reordered")
        return [f"{n} {getattr(self, n)}" for n in names if getattr(self, n)]


class SequenceChecker:
    """Per (receiver, sender) stream: each sequence number once, in increasing order.

    A message that arrives after a later one of the same sender is a reordering (counted
    when it arrives); one that never arrives is lost, unless the server refused it
    (`refuse`: an `unavailable` answer means it was not accepted, PROTOCOL.md 3.3)."""

    def __init__(self) -> None:
        self._streams: dict[tuple[int, int], Stream] = {}
        self._refused: dict[int, set[int]] = {}  # sender -> sequence numbers refused
        self.duplicates = 0
        self.reordered = 0
        self.received = 0

    def observe(self, receiver: int, sender: int, seq: int) -> None:
        """Receiver `receiver` got message `seq` of `sender`."""
        key = (receiver, sender)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = Stream()
        if seq == stream.next_seq:
            stream.next_seq += 1
            self.received += 1
        elif seq > stream.next_seq:
            # earlier ones have not come (yet): late if they do, lost if they never do
            stream.missing.update(range(stream.next_seq, seq))
            stream.next_seq = seq + 1
            self.received += 1
        elif seq in stream.missing:
            stream.missing.discard(seq)
            self.reordered += 1
            self.received += 1
        else:
            self.duplicates += 1

    def refuse(self, sender: int, seq: int) -> None:
        """The server refused message `seq` of `sender`: nobody is to get it."""
        self._refused.setdefault(sender, set()).add(seq)

    def got(self, receiver: int, sender: int) -> int:
        """Unique messages of `sender` that `receiver` has received."""
        stream = self._streams.get((receiver, sender))
        return stream.unique if stream is not None else 0

    def verdict(self, sent: dict[tuple[int, int], int]) -> Verdict:
        """Compare with `sent[(receiver, sender)]`: the messages the sender sent (sequence
        numbers 0 .. count-1), each of which the receiver must have, except the refused."""
        v = Verdict(duplicates=self.duplicates, reordered=self.reordered)
        for (receiver, sender), count in sent.items():
            stream = self._streams.get((receiver, sender), Stream())
            refused = {seq for seq in self._refused.get(sender, ()) if seq < count}
            below = min(stream.next_seq, count)
            missing = {seq for seq in stream.missing if seq < count}
            received = below - len(missing)
            refused_received = sum(1 for seq in refused if seq < below and seq not in missing)
            v.expected += count - len(refused)
            v.received += received - refused_received
            v.lost += count - len(refused) - (received - refused_received)
            # seen though refused, or though its sender never had an answer for it
            beyond = stream.next_seq - below - (len(stream.missing) - len(missing))
            v.unexpected += refused_received + beyond
        return v


def percentile(sorted_values: list[int], fraction: float) -> float:
    """The value at `fraction` (0..1) of an already sorted list, nearest rank; 0 if empty."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[index])
