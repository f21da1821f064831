"""The subscription's state machine, without Redis, asyncio or sleeps: a fake clock.

Each test walks `gateway.broker.redis.subscription.Subscription` through events and checks
the actions it asks for. The I/O shell around it (`gateway.broker.redis.subscriber.Subscriber`) is
covered against real Redis by tests/test_redis_faults.py and the cluster tests.
"""

from __future__ import annotations

import pytest

from gateway.broker.redis import subscription_actions as act
from gateway.broker.redis.subscription import Phase, Subscription

PROBE = "probe"
INTERVAL = 1.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def kinds(actions: list[act.Action]) -> list[type]:
    return [type(action) for action in actions]


def machine(clock: Clock, *, sharded: bool = False) -> Subscription:
    """A subscription with no jitter: each wait is exactly the backoff."""
    return Subscription(PROBE, INTERVAL, clock, sharded=sharded, jitter=lambda: 0.5)


def go_live(sub: Subscription) -> list[act.Action]:
    """From CONNECTING: every channel acked, the gap filled."""
    (connect,) = [a for a in sub.backoff_over() or sub.start() if isinstance(a, act.Connect)]
    return live_after(sub, connect)


def live_after(sub: Subscription, connect: act.Connect) -> list[act.Action]:
    actions: list[act.Action] = []
    for channel in connect.channels:
        actions += sub.acked(channel)
    assert kinds(actions) == [act.FillGap]
    actions = sub.filled()
    assert sub.phase is Phase.LIVE
    return actions


def started(clock: Clock, *channels: str, sharded: bool = False) -> Subscription:
    sub = machine(clock, sharded=sharded)
    for channel in channels:
        sub.want(channel)
    go_live(sub)
    return sub


def probe_round(sub: Subscription, clock: Clock, token: str, delay: float) -> None:
    """Send probe `token`, and hear it `delay` seconds later."""
    assert sub.probe_due(token) == [act.SendProbe(token)]
    clock.now += delay
    assert sub.message(PROBE, b"q" + token.encode()) == []


def test_start_subscribes_every_wanted_channel_then_fills_then_goes_live() -> None:
    clock = Clock()
    sub = machine(clock)
    sub.want("room:a", 2)
    assert sub.start() == [act.Connect(("probe", "room:a"))]
    assert sub.message("room:a", b"early") == []  # held until the gap is filled
    assert sub.acked("probe") == []
    assert sub.acked("room:a") == [act.FillGap(frozenset({"probe", "room:a"}))]
    assert sub.message("room:a", b"during") == []
    assert sub.filled() == [
        act.Deliver("room:a", b"early"),
        act.Deliver("room:a", b"during"),
        act.MarkLive(),
    ]
    assert sub.message("room:a", b"live") == [act.Deliver("room:a", b"live")]
    assert sub.healthy()


def test_a_subscription_that_hears_no_probe_is_deaf_after_three_intervals() -> None:
    clock = Clock()
    sub = started(clock)
    for token in ("t1", "t2", "t3"):
        assert sub.healthy()
        clock.now += INTERVAL
        assert sub.probe_due(token) == [act.SendProbe(token)]  # 3 s: not yet deaf
    clock.now += INTERVAL  # 4 s since it went live, no probe back
    assert not sub.healthy()
    assert sub.probe_due("t4") == [act.Lost(), act.Renew("deaf: no probe came back")]
    assert sub.probe_due("t5") == []  # asked once; the reading side carries it out


def test_a_probe_back_within_the_window_keeps_it_healthy() -> None:
    clock = Clock()
    sub = started(clock)
    for index in range(10):
        clock.now += INTERVAL
        probe_round(sub, clock, f"t{index}", 0.1)
    assert sub.healthy()
    assert sub.probe_rtt == pytest.approx(0.1)


def test_a_probe_slower_than_its_interval_still_counts() -> None:
    """Every probe in the deaf window counts, not only the newest (a storm of renewals)."""
    clock = Clock()
    sub = started(clock)
    clock.now += INTERVAL
    sub.probe_due("slow")
    clock.now += INTERVAL
    sub.probe_due("next")  # sent before the first came back
    clock.now += 0.8
    assert sub.message(PROBE, b"qslow") == []
    assert sub.probe_rtt == pytest.approx(1.8)
    clock.now += 2.5  # 4.3 s since live, 2.5 s since a probe came back
    assert kinds(sub.probe_due("t")) == [act.SendProbe]


def test_a_late_probe_after_the_renewal_does_not_count() -> None:
    """An answer heard once the subscription was judged deaf neither makes it healthy
    nor resets the backoff (one deaf again and again backs off)."""
    clock = Clock()
    sub = machine(clock)
    sub.start()
    for _ in range(2):  # two failed attempts: the backoff is at 0.4 s
        sub.lost("refused")
        sub.backoff_over()
    go_live_from_connecting(sub)
    clock.now += INTERVAL
    sub.probe_due("late")
    clock.now += 3 * INTERVAL
    assert kinds(sub.probe_due("x")) == [act.Lost, act.Renew]
    assert sub.message(PROBE, b"qlate") == []  # back after it was judged deaf
    assert sub.probe_rtt is None
    assert not sub.healthy()
    (wait,) = [a for a in sub.lost("deaf") if isinstance(a, act.Wait)]
    assert wait.delay == pytest.approx(0.4)  # not reset to 0.1 by the late answer
    sub.backoff_over()
    go_live_from_connecting(sub)
    sub.message(PROBE, b"qlate")  # nor on the next connection
    assert sub.probe_rtt is None


def test_renewal_is_asked_of_the_reading_side_never_carried_out_elsewhere() -> None:
    """Deafness and failed commands ask for a renewal; the connection is dropped only
    when the reading side reports `lost` (dropping it from the probe task left
    redis-py's reader on a connection the pool gave to a command)."""
    clock = Clock()
    sub = started(clock, "room:a", "room:b")
    asked = sub.command_failed("SUBSCRIBE room:c failed")
    assert asked == [act.Renew("SUBSCRIBE room:c failed")]
    assert sub.phase is Phase.LIVE and sub.renewing  # still reading
    assert sub.command_failed("again") == []
    clock.now += 10 * INTERVAL
    assert sub.probe_due("t") == []  # no second request while one is pending
    assert sub.message("room:a", b"m") == [act.Deliver("room:a", b"m")]
    after = sub.lost("SUBSCRIBE room:c failed")
    assert kinds(after) == [act.MarkUnready, act.Lost, act.Drop, act.Wait]
    assert sub.phase is Phase.BACKOFF and not sub.renewing
    assert sub.backoff_over() == [act.Connect(("probe", "room:a", "room:b"))]


def test_backoff_doubles_up_to_its_cap_and_restarts_after_a_probe_came_back() -> None:
    clock = Clock()
    sub = machine(clock)
    sub.start()
    delays = []
    for _ in range(8):
        (wait,) = [a for a in sub.lost("refused") if isinstance(a, act.Wait)]
        assert not wait.was_live
        delays.append(wait.delay)
        assert kinds(sub.backoff_over()) == [act.Connect]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    go_live_from_connecting(sub)
    (wait,) = [a for a in sub.lost("no probe yet") if isinstance(a, act.Wait)]
    assert wait.delay == 5.0 and wait.was_live  # live, but it never heard a probe
    sub.backoff_over()
    go_live_from_connecting(sub)
    probe_round(sub, clock, "t", 0.1)
    (wait,) = [a for a in sub.lost("killed") if isinstance(a, act.Wait)]
    assert wait.delay == 0.1  # it worked: the next loss starts afresh


def go_live_from_connecting(sub: Subscription) -> None:
    live_after(sub, act.Connect(tuple(sorted(sub.on_connection))))


def test_backoff_is_jittered_by_the_given_source() -> None:
    sub = Subscription(PROBE, INTERVAL, Clock(), jitter=lambda: 0.0)
    sub.start()
    (wait,) = [a for a in sub.lost("x") if isinstance(a, act.Wait)]
    assert wait.delay == pytest.approx(0.05)


def test_subscribe_while_reconnecting_waits_for_the_next_connection() -> None:
    clock = Clock()
    sub = started(clock, "room:a")
    sub.lost("killed")
    assert sub.subscribe("room:b") == []  # no connection: nothing to send
    (connect,) = sub.backoff_over()
    assert connect == act.Connect(("probe", "room:a", "room:b"))
    # While connecting, a new channel goes on the new connection at once.
    assert sub.subscribe("room:c") == [act.SubscribeChannel("room:c")]
    assert sub.subscribe("room:a") == []  # already on it
    live_after(sub, connect)  # the first subscribe's channels are what the fill waits for


def test_subscribe_counts_users_and_unsubscribes_after_the_last() -> None:
    clock = Clock()
    sub = started(clock)
    assert sub.subscribe("room:a") == [act.SubscribeChannel("room:a")]
    assert sub.subscribe("room:a") == []
    assert sub.unsubscribe("room:a") == []
    assert sub.unsubscribe("room:a") == [act.UnsubscribeChannel("room:a")]
    assert "room:a" not in sub.wanted


def test_unsubscribe_mid_renewal_leaves_it_off_the_next_connection() -> None:
    clock = Clock()
    sub = started(clock, "room:a", "room:b", sharded=True)
    sub.command_failed("SUBSCRIBE room:c failed")
    assert sub.unsubscribe("room:a") == [act.UnsubscribeChannel("room:a")]
    assert sub.server_unsubscribed("room:a") == []  # the reply to ours, not a loss
    sub.lost("renewed")
    assert sub.backoff_over() == [act.Connect(("probe", "room:b"))]


def test_unsubscribe_while_connecting_does_not_wait_for_its_ack() -> None:
    clock = Clock()
    sub = machine(clock)
    sub.want("room:a")
    sub.start()
    assert sub.acked("probe") == []
    assert sub.unsubscribe("room:a") == [
        act.UnsubscribeChannel("room:a"),
        act.FillGap(frozenset({"probe", "room:a"})),
    ]
    assert sub.acked("room:a") == []  # its ack comes anyway: nothing more to do
    assert kinds(sub.filled()) == [act.MarkLive]


def test_a_server_unsubscribe_on_a_shard_is_a_lost_subscription() -> None:
    clock = Clock()
    sub = started(clock, "room:a", sharded=True)
    assert sub.server_unsubscribed("room:zzz") == []  # not ours: nothing to lose
    assert sub.server_unsubscribed("room:a") == [
        act.Renew("the server unsubscribed room:a (its slot moved)")
    ]


def test_no_probe_before_live_and_none_while_backing_off() -> None:
    clock = Clock()
    sub = machine(clock)
    sub.start()
    clock.now += 10 * INTERVAL
    assert sub.probe_due("t") == []  # connecting: the gap fill may take long
    sub.lost("refused")
    assert sub.probe_due("t") == []
    assert not sub.healthy()


def close_in(phase: Phase, clock: Clock) -> Subscription:
    sub = machine(clock)
    sub.want("room:a")
    if phase is Phase.IDLE:
        return sub
    (connect,) = sub.start()
    assert isinstance(connect, act.Connect)
    if phase is Phase.CONNECTING:
        return sub
    for channel in connect.channels:
        sub.acked(channel)
    if phase is Phase.FILLING:
        return sub
    sub.filled()
    if phase is Phase.LIVE:
        return sub
    sub.lost("killed")
    assert phase is Phase.BACKOFF
    return sub


@pytest.mark.parametrize("phase", [p for p in Phase if p is not Phase.CLOSED])
def test_close_in_every_phase_and_nothing_after(phase: Phase) -> None:
    clock = Clock()
    sub = close_in(phase, clock)
    assert sub.phase is phase
    assert sub.close() == [act.MarkUnready(), act.Drop()]
    assert sub.phase is Phase.CLOSED
    assert sub.close() == []
    clock.now += 10 * INTERVAL
    for event in (
        sub.start,
        sub.filled,
        sub.backoff_over,
        lambda: sub.lost("x"),
        lambda: sub.acked("room:a"),
        lambda: sub.probe_due("t"),
        lambda: sub.message("room:a", b"m"),
        lambda: sub.message(PROBE, b"qt"),
        lambda: sub.subscribe("room:b"),
        lambda: sub.unsubscribe("room:a"),
        lambda: sub.command_failed("x"),
        lambda: sub.server_unsubscribed("room:a"),
    ):
        assert event() == []
    assert not sub.healthy()
