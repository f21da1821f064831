"""The garbage collector's pauses, measured while the node serves.

CPython's full collection walks every object the collector tracks; one comes each time
the objects promoted to the oldest generation since the last one pass 25 % of those it
left alive, so with more connections open full collections come more rarely but each
walks more. A pause stalls every connection of the node, and one past the Redis
client's timeout fails sends and joins: `chat_gc_pause_seconds{generation}` shows them.

What keeps them short is elsewhere: start-up's objects are frozen once
(gateway/serving.py), a connection holds few objects after its handshake
(gateway/link.py), and a closed connection leaves no reference cycle, so it is freed by
reference counting at once (tests/test_gc.py). What survives a full collection is not
frozen: an object that later became garbage inside a cycle would then never be freed.
"""

from __future__ import annotations

import gc
import time
from contextlib import suppress
from typing import Any

from prometheus_client import Histogram


class CollectionPauses:
    """Observes each collection's pause in `pauses` (by generation), from `start` to
    `stop`."""

    def __init__(self, pauses: Histogram) -> None:
        self._pauses = [pauses.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0  # perf_counter at the start of the collection under way

    def start(self) -> None:
        """Measure every collection from now on."""
        gc.callbacks.append(self._on_collection)

    def stop(self) -> None:
        """Stop measuring."""
        with suppress(ValueError):
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation: int = info["generation"]
        self._pauses[generation].observe(time.perf_counter() - self._started)
