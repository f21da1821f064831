"""One partition's events on their way to the application (PROTOCOL section 11.2).

While its node holds the partition's lease, a `Delivery` reads the oldest waiting events
(`EventLog.pending`, up to `--events-batch`), POSTs them as `{"events": [...]}` to
`--events-url`, signed, and confirms them once the application answered 2xx; then at
once the next batch. Any other answer, or none, and the SAME batch is posted again after
0.5 s, 1 s, 2 s ... (at most 30 s apart) before anything later of the partition: a
room's later event never goes out while an earlier one is unanswered. With nothing
waiting it looks again every 0.2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.backend_http import BackendHttp, BackendUnreachable
from gateway.broker.event_log import EventLog, StoredEvent
from gateway.errors import BrokerUnavailable
from gateway.metrics import EventMetrics

log = logging.getLogger(__name__)

IDLE_POLL = 0.2  # seconds between two looks at a partition with nothing waiting
FIRST_RETRY = 0.5  # seconds before a failed batch is posted again; doubles each time
MAX_RETRY = 30.0  # ... up to this
BROKER_RETRY = 5.0  # ... or up to this while the broker is what fails (as resubscribing)
POST_TIMEOUT = 10.0  # seconds the application may take to answer one batch


@dataclass
class Failure:
    """The last thing that went wrong delivering events, and when (epoch seconds)."""

    error: str
    at: float


class Outcome:
    """What the partitions of one node report: the last failure, logged once per spell
    (a failing application is not logged every 0.5 s per partition)."""

    def __init__(self) -> None:
        self.last_failure: Failure | None = None
        self._failing = False

    def failed(self, error: str, detail: str = "") -> None:
        """A post or a broker call failed with `error` (what /readyz shows: no URL, no
        address); `detail` goes to the log only."""
        self.last_failure = Failure(error, time.time())
        if not self._failing:
            log.warning("events: %s%s; retrying with backoff (up to %.0fs apart)",
                        error, f" ({detail})" if detail else "", MAX_RETRY)  # fmt: skip
        self._failing = True

    def succeeded(self) -> None:
        """A batch was confirmed."""
        if self._failing:
            log.info("events: delivering again")
        self._failing = False


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how the events go: the URL, the node's client, the batch size."""

    url: str
    backend: BackendHttp
    batch: int


class Delivery:
    """The delivery task of one held partition; `stop()` ends it after its current post."""

    def __init__(
        self,
        partition: int,
        events: EventLog,
        target: Target,
        metrics: EventMetrics,
        outcome: Outcome,
        valid_until: float,
    ) -> None:
        self.partition = partition
        self._events = events
        self._target = target
        self._metrics = metrics
        self._outcome = outcome
        # Monotonic time until which the lease surely lasts (the feed moves it on).
        self.valid_until = valid_until
        self._running = True
        self._wake = asyncio.Event()  # set to cut a pause short (stopping)

    def stop(self) -> None:
        """Finish the post under way (if any), then end."""
        self._running = False
        self._wake.set()

    async def run(self) -> None:
        """Post the partition's events until stopped."""
        batch: Sequence[StoredEvent] = ()
        posted = False  # the application has `batch`: only its confirm is left
        delay = FIRST_RETRY
        cap = MAX_RETRY
        while self._running:
            if time.monotonic() >= self.valid_until:  # not renewed: wait for it
                if not posted:  # another node may post and confirm it meanwhile:
                    batch = ()  # once the lease is back, read what still waits
                await self._pause(IDLE_POLL)
                continue
            try:
                if not batch:
                    batch = await self._events.pending(self.partition, self._target.batch)
                    if not batch:
                        delay = FIRST_RETRY  # the broker answers: back to the start
                        await self._pause(IDLE_POLL)
                        continue
                if not posted:
                    posted = await self._post(batch)
                if posted:
                    await self._events.confirm(batch)
                    batch, posted, delay = (), False, FIRST_RETRY
                    self._outcome.succeeded()
                    continue
            except BrokerUnavailable as exc:
                self._outcome.failed("the broker is unavailable", str(exc))
                cap = BROKER_RETRY
            except Exception as exc:  # a task that died would hold its partition unposted
                log.exception("events: delivering partition %d failed", self.partition)
                self._outcome.failed(f"delivery failed: {type(exc).__name__}")
            else:
                cap = MAX_RETRY  # the application refused or was unreachable
            delay = min(delay, cap)
            await self._pause(delay)
            delay = min(delay * 2, cap)

    async def _post(self, batch: Sequence[StoredEvent]) -> bool:
        """POST `batch`; True once the application answered 2xx."""
        payload = {"events": [stored.event for stored in batch]}
        try:
            answer = await self._target.backend.post(self._target.url, payload, POST_TIMEOUT)
        except BackendUnreachable as exc:
            self._metrics.posted_by_result["unreachable"].inc()
            self._outcome.failed("the application is unreachable", str(exc))
            return False
        if not 200 <= answer.status < 300:
            self._metrics.posted_by_result["failed"].inc()
            self._outcome.failed(f"the application answered {answer.status}")
            return False
        self._metrics.posted_by_result["ok"].inc()
        self._metrics.delivered.inc(len(batch))
        now_ms = time.time() * 1000
        for stored in batch:
            ts = stored.event.get("ts")
            if isinstance(ts, int | float):
                self._metrics.lag.observe(max(0.0, (now_ms - ts) / 1000))
        return True

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less when stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
