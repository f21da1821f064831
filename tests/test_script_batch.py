"""A node's Lua scripts on one Redis go out in batches (gateway/broker/redis/script_batch.py):
scripts called together share one pipeline on one connection, each caller still gets its
own reply or error in the order called, and a lost connection fails only its batch. On a
real redis-server (MONITOR names the connection each command came on); the batch's own
bookkeeping (lanes, callers that gave up, a close) through `ScriptBatch` with a `send`
the test holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.broker.redis.connect import connect
from gateway.broker.redis.errors import REDIS_ERRORS
from gateway.broker.redis.lua import Lua
from gateway.broker.redis.script_batch import LANES, ScriptBatch
from tests.plugins.redis import RedisBackend
from tests.plugins.redis_monitor import monitored
from tooling.tcp_proxy import TcpProxy

PUSH = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
REFUSE = "if ARGV[1] == 'no' then return redis.error_reply('refused') end return 'yes'"


@pytest.fixture
def server_url(redis_backend: RedisBackend) -> str:
    if redis_backend.server is None:
        pytest.skip("needs a real redis-server")
    return redis_backend.server.url


@pytest.fixture
async def node_client(server_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = connect(server_url)  # the client a node on one Redis uses
    yield client
    await client.aclose()


async def sources_of_scripts(url: str, step: Callable[[], Awaitable[Any]]) -> tuple[Any, list[str]]:
    """Run `step`; its result, and the address each EVALSHA/EVAL sent meanwhile came from."""
    result, seen = await monitored(url, step)
    scripts = [entry for entry in seen if entry["command"].split(" ")[0] in ("EVALSHA", "EVAL")]
    return result, [entry["client_address"] + ":" + entry["client_port"] for entry in scripts]


async def test_scripts_called_together_go_out_together_each_answered_in_order(
    node_client: redis.asyncio.Redis, server_url: str, redis_backend: RedisBackend
) -> None:
    """Guards against one round trip per script (redis-py's per-command path was the
    largest cost of a burst of handshakes and of publishes) and against a batch that
    mixes up whose reply is whose, or runs the scripts out of the order called."""
    push = Lua(node_client, PUSH)
    key = redis_backend.new_prefix() + "pushed"
    await push(keys=[key], args=["warm"])  # the script is known: EVALSHA only below

    async def push_many() -> list[Any]:
        return await asyncio.gather(*(push(keys=[key], args=[str(i)]) for i in range(20)))

    lengths, sources = await sources_of_scripts(server_url, push_many)
    assert lengths == list(range(2, 22))  # each caller its own reply, in the order called
    assert len(sources) == 20 and len(set(sources)) == 1, sources  # one connection
    stored = await node_client.lrange(key, 1, -1)
    assert stored == [str(i).encode() for i in range(20)]


async def test_one_scripts_error_is_its_own(node_client: redis.asyncio.Redis) -> None:
    """Guards against an error reply failing the other scripts of its batch."""
    refuse = Lua(node_client, REFUSE)
    answers = await asyncio.gather(
        *(refuse(args=[arg]) for arg in ("ok", "no", "ok")), return_exceptions=True
    )
    assert answers[0] == answers[2] == b"yes"
    assert isinstance(answers[1], ResponseError) and "refused" in str(answers[1])


async def test_scripts_unknown_to_redis_are_sent_whole_each_answered(
    node_client: redis.asyncio.Redis, redis_backend: RedisBackend
) -> None:
    """Guards against a batch whose EVALSHAs all meet NOSCRIPT (a restarted or flushed
    Redis) leaving a caller without its answer."""
    push = Lua(node_client, PUSH)
    key = redis_backend.new_prefix() + "flushed"
    await push(keys=[key], args=["warm"])
    await node_client.script_flush()
    lengths = await asyncio.gather(*(push(keys=[key], args=[str(i)]) for i in range(5)))
    assert sorted(lengths) == [2, 3, 4, 5, 6]


async def test_a_lost_connection_fails_its_batch_and_the_next_goes_through(
    server_url: str, redis_backend: RedisBackend
) -> None:
    """Guards against callers left waiting for ever when their batch's connection dies
    (each must get a Redis error: the broker then answers `unavailable`), and against a
    batch task that never sends again after one failure."""
    assert redis_backend.server is not None
    proxy = await TcpProxy(redis_backend.server.port).start()
    client = connect(proxy.redis_url)
    refuse = Lua(client, REFUSE)
    try:
        assert await refuse(args=["ok"]) == b"yes"
        proxy.blackhole()  # the batch goes out and is never answered
        calls = [asyncio.create_task(refuse(args=["ok"])) for _ in range(5)]
        await asyncio.sleep(0)  # asked for: the batch is on its way
        proxy.cut()
        async with asyncio.timeout(5):
            failed = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(error, REDIS_ERRORS) for error in failed), failed
        proxy.heal()
        async with asyncio.timeout(5):
            assert await refuse(args=["ok"]) == b"yes"
    finally:
        await client.aclose()
        await proxy.close()


async def test_closing_the_client_fails_the_batch_on_its_way_and_those_waiting(
    server_url: str, redis_backend: RedisBackend
) -> None:
    """Guards against a closed client leaving a caller waiting, or handing it a
    CancelledError it did not ask for (read as its own cancel, it would be swallowed):
    both the batch sent and unanswered and one not sent yet."""
    assert redis_backend.server is not None
    proxy = await TcpProxy(redis_backend.server.port).start()
    client = connect(proxy.redis_url)
    refuse = Lua(client, REFUSE)
    watcher = redis.asyncio.Redis.from_url(server_url)
    try:
        assert await refuse(args=["ok"]) == b"yes"
        proxy.command_delay = 60.0  # Redis runs it; the reply is held
        async with watcher.monitor() as monitor:
            sent = asyncio.create_task(refuse(args=["sent"]))
            async with asyncio.timeout(5):  # its batch reached Redis: it is on its way
                while "sent" not in (await monitor.next_command())["command"]:
                    pass
        waiting = asyncio.create_task(refuse(args=["waiting"]))
        await asyncio.sleep(0)  # queued (or in a batch of its own): either way unanswered
        async with asyncio.timeout(10):
            await client.aclose()
            for call in (sent, waiting):
                with pytest.raises(RedisConnectionError):
                    await call
    finally:
        await watcher.aclose()
        await proxy.close()


class GatedSend:
    """A batch's `send` that records each batch and answers once let through."""

    def __init__(self, replies_per_command: int = 1) -> None:
        self.sent: list[list[tuple[Any, ...]]] = []
        self.gate = asyncio.Event()
        self._per_command = replies_per_command

    async def __call__(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.sent.append(commands)
        await self.gate.wait()
        return [b"ok"] * (len(commands) * self._per_command)


async def test_a_script_whose_caller_gave_up_before_it_went_out_is_not_sent() -> None:
    """Guards against a cancelled caller's script sent later anyway, after scripts
    called after it (a lease taken after it was let go; a claim after its release)."""
    send = GatedSend()
    batch = ScriptBatch(send, "test scripts")
    busy = []
    for lane in range(LANES):  # every lane with a batch on its way
        busy.append(asyncio.create_task(batch.run(("EVALSHA", f"busy{lane}"))))
        await asyncio.sleep(0)  # the lane starts and takes it
    gave_up = asyncio.create_task(batch.run(("EVALSHA", "gave-up")))
    later = asyncio.create_task(batch.run(("EVALSHA", "later")))
    await asyncio.sleep(0)
    gave_up.cancel()
    send.gate.set()
    async with asyncio.timeout(5):
        assert await asyncio.gather(*busy, later) == [b"ok"] * (LANES + 1)
    sent = [command[1] for commands in send.sent for command in commands]
    assert "gave-up" not in sent and "later" in sent
    await batch.close()


async def test_a_client_closed_before_its_lane_started_still_answers_later_scripts() -> None:
    """Guards against a close that cancelled a lane before its first step: the batch
    took it for one still about to start, and every later script waited for ever."""
    send = GatedSend()
    send.gate.set()
    batch = ScriptBatch(send, "test scripts")
    first = asyncio.create_task(batch.run(("EVALSHA", "first")))
    await asyncio.sleep(0)  # queued, its lane created and not started
    await batch.close()
    with pytest.raises(RedisConnectionError):
        await first
    async with asyncio.timeout(5):
        assert await batch.run(("EVALSHA", "after")) == b"ok"
    await batch.close()


async def test_replies_that_do_not_match_the_batch_fail_its_callers() -> None:
    """Guards against callers left waiting for ever when a batch's replies cannot be
    handed out (one reply per script is what a pipeline gives; a bug would break it)."""
    send = GatedSend(replies_per_command=0)  # none at all
    send.gate.set()
    batch = ScriptBatch(send, "test scripts")
    async with asyncio.timeout(5):
        with pytest.raises(RedisConnectionError):
            await batch.run(("EVALSHA", "one"))
    await batch.close()
