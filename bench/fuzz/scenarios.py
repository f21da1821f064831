"""The fuzz scenarios (random frames, handshakes, rooms, churn, slow readers) and the
two phases of a round that run them all at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time

import aiohttp

from bench.fuzz.config import (
    CHURN_TRIES,
    ENDING,
    HONEST_ROOM,
    MAX_CHARS,
    MAX_ROOMS,
    POLICY,
    RATE_BURST,
    STEP,
    TOO_BIG,
    Probe,
)
from bench.fuzz.inputs import HOSTILE_NAMES, Inputs, random_text
from bench.fuzz.raw_cases import RAW_CASES
from bench.fuzz.run import FuzzRun
from tooling.wsclient import CLOSE, TEXT


async def protocol_fuzzer(run: FuzzRun, mode: str, index: int) -> None:
    """Random frames of every kind, reconnecting whenever the node closes us."""
    rng = random.Random(f"{run.config.seed}/{run.round}/{mode}/{index}")
    inputs = Inputs(rng, run.offsets, run.config.huge_offsets)
    budget = run.config.frames_per_fuzzer
    for generation in itertools.count():
        if budget <= 0:
            return
        room = HONEST_ROOM if index % 2 == 0 else f"fz-{mode}{index}"
        label = f"{mode} fuzzer {index}.{generation}"
        params = {"name": f"fz-{mode}{index}-{generation}", "room": room}
        conn = await run.open(mode, params, label)
        if conn is None:
            budget -= 1
            continue
        await conn.wait_for(conn.entered)  # a refusal is judged in finish()
        while budget > 0:
            probe = inputs.json_frame() if mode == "json" else inputs.text_line()
            budget -= 1
            if not await conn.send(probe) or conn.closed.is_set():
                break
            if probe.kind in ENDING:  # the node closes: wait for it, send nothing more
                await conn.wait_for(lambda: False)
                break
        allowed = {"closed by us", f"close {POLICY}", f"close {TOO_BIG}"}
        if conn.quit_sent:
            allowed.add("close 1000")
        await conn.finish(label, allowed, answer_needed=True)


async def handshake_fuzzer(run: FuzzRun, index: int) -> None:
    """Random query parameters, and random names typed at text mode's question."""
    rng = random.Random(f"{run.config.seed}/{run.round}/handshake/{index}")
    json_mode = rng.random() < 0.5
    mine = f"fz-h{index}"
    params: dict[str, str] = {}
    names = [mine, mine, random_text(rng, 40), "", " ", "n" * 33, "honest-j", "HONEST-J",
             "h\u043enest-j", "a\x00b", "\u200b", "\ufeffbob", "x\u202ey",
             *HOSTILE_NAMES]  # fmt: skip
    rooms = [f"fz-h{index}", "lobby", "", "a b", "r" * 65, "../x", random_text(rng, 10)]
    if rng.random() < 0.9:
        params["name"] = rng.choice(names)
    if rng.random() < 0.7:
        params["room"] = rng.choice(rooms)
    if rng.random() < 0.4:
        inputs = Inputs(rng, run.offsets, run.config.huge_offsets)
        params["since"] = inputs.offset()
    if rng.random() < 0.2:
        session = random_text(rng, 30)
        if not run.config.non_ascii_sessions:
            session = session.encode("ascii", "replace").decode()
        params["session"] = session
    label = f"handshake {'json' if json_mode else 'text'} {params!r}"[:300]
    conn = await run.open("json" if json_mode else "text", params, label)
    if conn is None:
        return
    if json_mode:
        subscribed = await conn.wait_for(conn.entered)
        allowed = {f"close {POLICY}"} if not subscribed else {"closed by us"}
        if subscribed and params.get("name") in HOSTILE_NAMES:
            run.report.anomaly(f"{label}: a name no node may accept was welcomed")
    else:
        for _ in range(rng.randint(0, 3)):
            await conn.send(Probe(rng.choice(names[2:]), "typed name", None))
        await conn.send(Probe(mine, "typed name", False))
        await conn.wait_for(conn.entered)
        allowed = {"closed by us", f"close {POLICY}"}
    outcome = await conn.finish(label, allowed, answer_needed=False)
    if outcome == f"close {POLICY}" and conn.errors == 0:
        run.report.anomaly(f"{label}: refused without an error answer")


async def raw_cases(run: FuzzRun, round_index: int) -> None:
    """Every hand-made frame-level and handshake case, once, in a seeded order."""
    rng = random.Random(f"{run.config.seed}/{run.round}/raw/{round_index}")
    cases = list(RAW_CASES)
    rng.shuffle(cases)
    for name, case, allowed in cases:
        label = f"raw {name} (round {round_index})"
        try:
            async with asyncio.timeout(3 * STEP):
                outcome, detail = await case(run, rng)
        except TimeoutError:
            outcome, detail = "harness timeout", ""
        run.judge(label, outcome, allowed, detail)


async def slow_reader(run: FuzzRun, mode: str, index: int) -> None:
    """Fill a room with long messages, ask for its history again and again, never read:
    the node must close this connection (1008, too slow) and nobody else must notice."""
    room = f"slow-{mode}{index}"
    query = f"name=fz-slow-{mode}{index}&room={room}"
    sock = await run.raw(query, json_mode=mode == "json", rcvbuf=4096)
    if sock is None:
        return
    try:
        before = await run.metric("chat_slow_consumers_closed_total")
        texts = ["s" * (MAX_CHARS - 3) + f"{i:03}" for i in range(RATE_BURST)]
        if mode == "json":
            texts = [json.dumps({"type": "send", "room": room, "text": t}) for t in texts]
        # RATE_BURST: the room holds no more, and a request costs the history budget the
        # limit it asks for (HISTORY_BURST 1000, limit 20: 50 answers of 80 KB at once).
        ask = json.dumps({"type": "history", "room": room, "limit": RATE_BURST})
        ask = ask if mode == "json" else f"/history {RATE_BURST}"
        with contextlib.suppress(ConnectionError):  # closed half way: `ending` tells how
            for text in [*texts, *[ask] * 100]:
                await sock.send_frame(TEXT, text.encode())
        run.report.frames += RATE_BURST + 100
        closed = False
        deadline = time.monotonic() + 3 * STEP
        while time.monotonic() < deadline:  # a bounded poll of the node's own counter
            if await run.metric("chat_slow_consumers_closed_total") > before:
                closed = True
                break
            await asyncio.sleep(0.1)
        outcome = await sock.ending(STEP) if closed else "not closed"
        # The close frame waits behind the unread data, so it comes if we read in
        # time; otherwise the node cuts the connection (CLOSE_TIMEOUT) and we see that.
        allowed = {f"close {POLICY}", "eof", "reset"}
        run.judge(f"slow reader {mode}{index}", outcome, allowed)
    finally:
        sock.close()


async def room_flood(run: FuzzRun, index: int, all_full: asyncio.Event, full: list[int]) -> None:
    """Join `joins_per_flood` distinct rooms: 50 are granted, the rest refused; hold
    them until every flood holds its own, then close."""
    label = f"room flood {index}"
    conn = await run.open("json", {"name": f"fz-f{index}", "room": f"fr{index}-0"}, label)
    if conn is None:
        return
    await conn.wait_for(conn.entered)
    joins = run.config.joins_per_flood
    for k in range(1, joins + 1):
        frame = json.dumps({"type": "join", "room": f"fr{index}-{k}", "ref": f"j{k}"})
        if not await conn.send(Probe(frame, "join", None)):
            break
    await conn.send(Probe(json.dumps({"type": "ping", "ref": "flooded"}), "ping", False))
    await conn.wait_for(lambda: "flooded" in conn.refs, 3 * STEP)
    granted, refused = conn.counts["subscribed+ref"], conn.counts["error+ref"]
    run.report.room_flood_subscribed.append(granted)
    expected = min(joins, MAX_ROOMS - 1)
    if granted != expected or refused != joins - expected:
        run.report.anomaly(
            f"{label}: {granted} joins granted and {refused} refused of {joins}; "
            f"expected {expected} granted (at most {MAX_ROOMS} rooms per connection)"
        )
    full.append(index)
    if len(full) == run.config.room_floods:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            run.report.rooms_at_peak = (await run.rooms())[1]
        all_full.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3 * STEP):
            await all_full.wait()
    await conn.finish(label, {"closed by us"}, answer_needed=False)


async def room_walk(run: FuzzRun, index: int) -> None:
    """Text mode walks through thousands of distinct rooms with /join."""
    label = f"room walk {index}"
    conn = await run.open("text", {"name": f"fz-w{index}", "room": f"fw{index}-0"}, label)
    if conn is None:
        return
    walks = run.config.rooms_per_walk
    for k in range(1, walks + 1):
        if not await conn.send(Probe(f"/join fw{index}-{k}", "join", False)):
            break
    outcome = await conn.finish(label, {"closed by us"}, answer_needed=False)
    entered = conn.counts["you are in"]
    if outcome == "closed by us" and entered != walks + 1:
        run.report.anomaly(f"{label}: entered {entered} of {walks + 1} rooms")


async def churn_one(run: FuzzRun, index: int) -> None:
    """Connect, enter a new room, then close cleanly or drop with a TCP reset. Refused
    with 429 (the address's connections not yet ended on the node), try again after
    its Retry-After, as a polite client does."""
    json_mode = index % 2 == 0
    room = f"churn-{index}"
    for _ in range(CHURN_TRIES):
        sock = await run.raw(f"name=fz-c{index}&room={room}", json_mode=json_mode)
        if sock is not None:
            break
        await asyncio.sleep(1.0)  # Retry-After: 1
    else:
        return
    try:
        if json_mode:
            entered = await sock.until(lambda t: '"type":"subscribed"' in t, STEP)
        else:
            entered = await sock.until(lambda t: t.startswith(f"* you are in {room}"), STEP)
        if not entered:
            run.judge(f"churn {index}", "not entered", set())
            return
        if index % 3 == 0:
            sock.abort()
            run.judge(f"churn {index}", "dropped by us", {"dropped by us"})
            return
        with contextlib.suppress(ConnectionError):
            await sock.send_frame(CLOSE, (1000).to_bytes(2, "big"))
        run.report.frames += 1
        run.judge(f"churn {index}", await sock.ending(STEP), {"close 1000"})
    finally:
        sock.close()


# phases: a round is the protocol phase, then the rooms phase -------------------------


async def protocol_phase(run: FuzzRun) -> None:
    """Random frames, handshakes, broken framing and slow readers, all at once."""
    config = run.config
    handshakes = asyncio.Semaphore(4)

    async def handshake(index: int) -> None:
        async with handshakes:
            await handshake_fuzzer(run, index)

    async with asyncio.TaskGroup() as group:
        for mode in ("json", "text"):
            for index in range(config.fuzzers):
                fuzzer = protocol_fuzzer(run, mode, index)
                group.create_task(run.guarded(f"{mode} fuzzer {index}", fuzzer))
        for index in range(config.handshakes):
            group.create_task(run.guarded(f"handshake {index}", handshake(index)))
        group.create_task(run.guarded("raw cases", _raw_rounds(run)))
        group.create_task(run.guarded("slow readers", _slow_readers(run)))


async def _slow_readers(run: FuzzRun) -> None:
    """One at a time: each one's close is told by the node's counter going up."""
    for index in range(run.config.slow_readers):
        for mode in ("json", "text"):
            await slow_reader(run, mode, index)


async def _raw_rounds(run: FuzzRun) -> None:
    """Every raw case, `raw_rounds` times over."""
    for round_index in range(run.config.raw_rounds):
        await raw_cases(run, round_index)


async def rooms_phase(run: FuzzRun) -> None:
    """Thousands of rooms: floods holding 50 each, text walks, and churn."""
    config = run.config
    all_full = asyncio.Event()
    full: list[int] = []
    churn = asyncio.Semaphore(config.churn_parallel)

    async def limited_churn(index: int) -> None:
        async with churn:
            await churn_one(run, index)

    async with asyncio.TaskGroup() as group:
        for index in range(config.room_floods):
            flood = room_flood(run, index, all_full, full)
            group.create_task(run.guarded(f"room flood {index}", flood))
        for index in range(config.text_room_walks):
            group.create_task(run.guarded(f"room walk {index}", room_walk(run, index)))
    async with asyncio.TaskGroup() as group:
        for index in range(config.churn):
            group.create_task(run.guarded(f"churn {index}", limited_churn(index)))
