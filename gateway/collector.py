"""The garbage collector of a node that holds many long-lived connections.

CPython's full collection walks every object the collector tracks, and one comes each
time the objects promoted to the oldest generation since the last one pass 25 % of those
it left alive. While connections open, each one adds its objects to that generation: a
node taking 18,000 connections (some two million objects) ran about sixteen full
collections, each longer than the one before, up to seconds on a loaded machine (more
than the Redis client's timeout: joins failed), and the cost per connection grew with
the connections already open.

`FrozenGenerations` keeps full collections short and their cost per object flat: once
the node has started and frozen what start-up made (gateway/serving.py: `gc.freeze`
moves objects to a permanent generation no collection walks), it freezes the survivors
of each full collection too. A full collection then walks only what was promoted since
the last one.

A frozen object that dies by reference counting is freed as usual; one that becomes
garbage only inside a reference cycle would stay for good. So a connection must leave
no cycle behind: tests/test_gc.py checks that a closed connection is freed by reference
counting alone, and `chat_gc_frozen_objects` shows a leak as a count that keeps growing
while connections come and go.
"""

from __future__ import annotations

import gc
import time
from contextlib import suppress
from typing import Any

from prometheus_client import Histogram


class FrozenGenerations:
    """The node's collector policy (see the module's docstring), started and stopped
    with the node; each collection's pause observed in `pauses` (by generation)."""

    def __init__(self, pauses: Histogram) -> None:
        self._pauses = [pauses.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0  # perf_counter at the start of the collection under way

    def start(self) -> None:
        """Measure every collection, and freeze the survivors of each full one."""
        gc.callbacks.append(self._on_collection)

    def stop(self) -> None:
        """Stop measuring and freezing (what is frozen stays so: the process ends)."""
        with suppress(ValueError):
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation: int = info["generation"]
        self._pauses[generation].observe(time.perf_counter() - self._started)
        if generation == 2:
            gc.freeze()  # every generation is empty but the oldest: its survivors
