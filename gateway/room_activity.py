"""Messages per room in the last minute, for the operator's console, without a counter
on the hot path: each room's message count (its newest sequence number,
`Broker.room_counts`) is sampled whenever the console asks, and the messages of the
last minute are the count now less the count of the oldest sample within that minute.
Until a minute of samples exists the answer covers what there is (`seconds` says how
long); a room whose count went down (its history expired and began anew) starts again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 60.0  # seconds
MAX_SAMPLES = 120  # per room: a console asking every half second fills a minute


@dataclass(frozen=True, slots=True)
class Activity:
    """`messages` sent to a room over the last `seconds` (at most WINDOW)."""

    messages: int
    seconds: float


class RoomActivity:
    """Samples of every room's message count, kept one minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}  # room -> (time, count)

    def sample(self, counts: dict[str, int]) -> dict[str, Activity]:
        """Note each room's count now; each room's activity over the last minute.
        Rooms not in `counts` are forgotten."""
        now = self._clock()
        for gone in self._samples.keys() - counts.keys():
            del self._samples[gone]
        activity = {}
        for room, count in counts.items():
            samples = self._samples.setdefault(room, deque(maxlen=MAX_SAMPLES))
            if samples and samples[-1][1] > count:
                samples.clear()  # a history begun anew: count from here
            while samples and now - samples[0][0] > WINDOW:
                samples.popleft()
            samples.append((now, count))
            since, first = samples[0]
            activity[room] = Activity(count - first, round(now - since, 1))
        return activity
