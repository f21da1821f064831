"""Which caller a SUBSCRIBE's answer confirms (gateway/broker/redis/subscribe_acks.py).

A welcome waits for the confirmation of its user channel: confirmed too early, a direct
message published before Redis has the channel subscribed again would be lost. Redis
answers a connection's SUBSCRIBEs in the order sent, so the answer to one sent before
the channel was unsubscribed must not confirm the caller that subscribed it again."""

from __future__ import annotations

from gateway.broker.redis.subscribe_acks import Confirmations


async def test_the_answer_to_a_forgotten_subscribe_confirms_nobody() -> None:
    """Guards against a re-subscriber welcomed on the answer to the SUBSCRIBE of a
    caller who gave up (sent, then unsubscribed), before its own SUBSCRIBE was answered
    or even sent: a direct message published in between was lost."""
    confirmations = Confirmations()
    (first,) = confirmations.expect(["user:bob"])  # its SUBSCRIBE goes out
    confirmations.forget("user:bob")  # its caller gave up: UNSUBSCRIBE
    assert first.done()  # nobody waits on it any more
    (again,) = confirmations.expect(["user:bob"])  # subscribed again: a new SUBSCRIBE
    assert again is not first
    confirmations.answered("user:bob")  # the first SUBSCRIBE's answer
    assert not again.done()
    confirmations.answered("user:bob")  # its own
    assert again.done()


async def test_an_answer_confirms_its_callers_when_nothing_is_owed() -> None:
    """Guards against owed answers counted for a channel whose SUBSCRIBE was already
    answered (or never sent): the next caller's own answer would then confirm nobody
    and its welcome wait for the timeout."""
    confirmations = Confirmations()
    (first,) = confirmations.expect(["user:ann"])
    confirmations.answered("user:ann")
    assert first.done()
    confirmations.forget("user:ann")  # unsubscribed once confirmed: nothing owed
    (queued,) = confirmations.expect(["user:ann"])
    confirmations.confirm("user:ann")  # dropped before its batch went out
    (again,) = confirmations.expect(["user:ann"])
    confirmations.answered("user:ann")
    assert queued.done() and again.done()


async def test_a_lost_connection_owes_nothing() -> None:
    """Guards against answers owed by a connection that is gone swallowing the next
    connection's: it answers only the SUBSCRIBEs sent on it."""
    confirmations = Confirmations()
    confirmations.expect(["user:cy"])
    confirmations.forget("user:cy")
    confirmations.fail_all()
    (again,) = confirmations.expect(["user:cy"])
    confirmations.answered("user:cy")
    assert again.done()
