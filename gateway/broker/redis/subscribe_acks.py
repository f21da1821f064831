"""The callers waiting for Redis to confirm a SUBSCRIBE: one future per channel.

`Subscriber.subscribe` returns once Redis confirmed its channel, so a welcome follows a
confirmed subscription. A channel is expected when its SUBSCRIBE is about to go out (in
a batch, or with every channel of a new connection), confirmed when the reading task
reads its `subscribe` (or `ssubscribe`) message, and released at once when it was
unsubscribed before its SUBSCRIBE was sent. A channel unsubscribed after its SUBSCRIBE
went out still has that SUBSCRIBE's answer to come: it is owed, and confirms nobody (a
caller subscribing the channel again meanwhile waits for the answer to its own
SUBSCRIBE, which Redis sends after it). When the connection is lost every wait fails:
the next connection subscribes the channel again, and its gap fill covers the wait.
Nothing here touches Redis or decides what to subscribe.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

ACK_TIMEOUT = 5.0  # seconds for Redis to confirm a subscription


class Confirmations:
    """The unconfirmed SUBSCRIBEs, each with the future its callers wait on."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[None]] = {}  # channel -> subscribe ack
        self._owed: Counter[str] = Counter()  # answers to SUBSCRIBEs nobody waits for

    def expect(self, channels: Iterable[str]) -> list[asyncio.Future[None]]:
        """A future for each of `channels`, the one already waited on if it is pending."""
        loop = asyncio.get_running_loop()
        waiting = []
        for channel in channels:
            future = self._futures.get(channel)
            if future is None or future.done():
                future = self._futures[channel] = loop.create_future()
            waiting.append(future)
        return waiting

    def pending(self, channel: str) -> asyncio.Future[None] | None:
        """The future of `channel`'s unconfirmed SUBSCRIBE, if there is one."""
        return self._futures.get(channel)

    def pending_of(self, channels: Iterable[str]) -> list[asyncio.Future[None]]:
        """The futures of those of `channels` that wait for their confirmation."""
        return [self._futures[c] for c in channels if c in self._futures]

    def answered(self, channel: str) -> None:
        """Redis answered a SUBSCRIBE of `channel`: the oldest one sent. One owed (sent
        before the channel was unsubscribed) confirms nobody; else its callers' wait
        is over."""
        if self._owed[channel]:
            self._owed[channel] -= 1
            if not self._owed[channel]:
                del self._owed[channel]
            return
        self.confirm(channel)

    def confirm(self, channel: str) -> None:
        """`channel`'s callers stop waiting: it is confirmed, or its SUBSCRIBE was never
        sent and nobody wants it any more."""
        future = self._futures.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)

    def forget(self, channel: str) -> None:
        """Stop tracking `channel`: it is being unsubscribed after its SUBSCRIBE went out.
        Whoever still waits for that SUBSCRIBE (its caller gone) stops waiting (no
        answer would end that wait once the future is untracked, and the next batch
        waited behind it), and its answer, still to come, is owed."""
        future = self._futures.get(channel)
        if future is not None and not future.done():
            self._owed[channel] += 1
        self.confirm(channel)

    def fail_all(self) -> None:
        """The connection is lost: every wait ends with a ConnectionError."""
        for future in self._futures.values():
            if not future.done():
                future.set_exception(ConnectionError("redis subscription lost"))
                future.exception()  # retrieved: nobody may be waiting
        self._futures.clear()
        self._owed.clear()  # a new connection answers only its own SUBSCRIBEs

    @staticmethod
    async def wait(waiting: list[asyncio.Future[None]]) -> None:
        """Wait for `waiting` to be confirmed, at most ACK_TIMEOUT. Never raises for a
        timeout or a lost connection: the subscription renews itself after either."""
        if waiting:  # asyncio.wait neither raises their errors nor cancels them
            await asyncio.wait(waiting, timeout=ACK_TIMEOUT)
