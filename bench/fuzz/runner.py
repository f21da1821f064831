"""The whole run: start a node, fuzz it round by round while the honest users chat,
let it settle, and measure it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import aiohttp

from bench.fuzz.config import (
    FUZZ_API_KEY,
    HONEST_ROOM,
    STEP,
    FuzzConfig,
    limit_flags,
)
from bench.fuzz.honest import Honest
from bench.fuzz.node import FuzzedNode
from bench.fuzz.report import FuzzReport
from bench.fuzz.run import FuzzRun
from bench.fuzz.scenarios import protocol_phase, rooms_phase


async def run_fuzz(config: FuzzConfig, node_log: Path | None = None) -> FuzzReport:
    """Start a node, fuzz it with the honest users chatting, let it settle, measure."""
    report = FuzzReport(config)
    # Every fuzz client comes from one address, and the rooms phase enters thousands of
    # rooms from it on purpose (floods, walks, churn): the join budgets, which would refuse
    # most of that (tests/test_budgets.py tests them), are off, as in the bench.
    extra: list[str] = ["--join-rate", "0", "--join-rate-per-ip", "0", *limit_flags()]
    if config.redis_url:
        prefix = f"fuzz-{config.seed}-{os.getpid()}-{time.time_ns()}:"
        extra += ["--redis-url", config.redis_url, "--redis-prefix", prefix]
    node = FuzzedNode(None, *extra, "--api-key", FUZZ_API_KEY)
    await asyncio.to_thread(node.start)
    started = time.monotonic()
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await _fuzz(FuzzRun(config, node, http, report))
    finally:
        report.seconds = time.monotonic() - started
        report.node_exited = not node.alive()
        await asyncio.to_thread(node.stop)
        report.node_tracebacks = node.tracebacks()
        report.node_failures = node.failures()
        report.node_warnings = node.warnings()
        if node_log is not None:
            await asyncio.to_thread(node_log.write_text, node.log())
        node.close()
    return report


async def _fuzz(run: FuzzRun) -> None:
    report, node = run.report, run.node
    report.rss_start = node.memory()
    honest = Honest(run)
    await honest.connect()
    stop = asyncio.Event()
    chat = asyncio.create_task(honest.chat(stop))
    health = asyncio.create_task(run.watch_health())
    try:
        await honest.first_exchange()
        report.rss_before = node.memory()
        try:
            async with asyncio.timeout(run.config.time_cap):
                for index in range(run.config.rounds):
                    run.round = index
                    await protocol_phase(run)
                    await rooms_phase(run)
                    # Only the honest users are left: the node's memory now, round by round.
                    if not await run.settle(2, (HONEST_ROOM,)):
                        report.anomaly(
                            f"round {run.round} did not settle: {report.connections_left:g} "
                            f"connections, rooms {report.rooms_left[:10]}"
                        )
                    report.rss_rounds.append(node.memory())
        except TimeoutError:
            report.time_capped = True
        report.slow_consumers_closed = int(await run.metric("chat_slow_consumers_closed_total"))
        stop.set()
        async with asyncio.timeout(2 * STEP):
            await chat
        await honest.finish()
    finally:
        stop.set()
        health.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await health
        if not chat.done():
            chat.cancel()
        await honest.close()
    report.rss_peak = node.memory("VmHWM")
    report.settled = await run.settle()
    report.rss_after = node.memory()
    if run.config.linger:
        await asyncio.sleep(run.config.linger)  # waiting out the node's timers, on purpose
        report.rss_later = node.memory()
    try:
        report.healthz_after, _ = await run.get("/healthz")
    except (aiohttp.ClientError, TimeoutError, ConnectionError):
        report.healthz_after = None
