"""One campaign: start the system, run the clients under the nemesis, heal, check.

Phases: the system starts and each room gets a first message (so every client's first
`subscribed` has an offset to resume after); the clients connect and send while the
nemesis injects faults for `seconds`; then a quiet period: everything is healed, the
clients stop sending new messages (a message in flight is still sent until acked), and
the campaign waits (bounded) until every client is connected and has every acked
message of its room; last, presence: `members` of each room on every node must equal
the clients connected to it, and every node must be ready; and the events: the campaign
waits (bounded) until the nodes have posted every event to its application, then the
checker reads what the application received beside what the clients saw.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.chaos.application import Application
from bench.chaos.checker import Verdict, check
from bench.chaos.clients import READER, ChaosClient, ClientTimers
from bench.chaos.event_checker import check_events
from bench.chaos.history import History
from bench.chaos.nemesis import Nemesis, faults_for
from bench.chaos.system import System, SystemFailure

SETTLE_TIMEOUT = 60.0  # seconds the quiet period waits for clients to catch up
PRESENCE_TIMEOUT = 30.0  # seconds it waits for presence to converge after that
MAX_SHOWN = 100  # violations printed (each with the faults around it); the rest counted


@dataclass(frozen=True)
class CampaignConfig:
    """What to run: `seconds` of faults on `redis` (single or cluster), from `seed`."""

    seconds: float = 120.0
    seed: int = 0
    redis: str = "single"
    clients: int = 30
    rooms: int = 5
    readers: int = 5  # of the clients, those that only listen (READER)
    max_pause: float = 20.0
    overlap: bool = True  # False: each fault healed before the next begins
    failover_first: bool = False  # True: a killed primary is back only after its failover
    faults: tuple[str, ...] | None = None  # None: every fault that fits `redis`
    keep: Path | None = None  # where to keep the logs; None: a temp dir, removed


async def run_campaign(config: CampaignConfig, say: Callable[[str], None] = print) -> Verdict:
    """Run the campaign; the verdict (with `history` read by the checker)."""
    directory = Path(tempfile.mkdtemp(prefix="chat-chaos-"))
    application = Application()
    await application.start()
    system = System(config.redis, directory, application.node_env())
    rng = random.Random(config.seed)
    try:
        await system.start()
        history = History()
        rooms = [f"room{i + 1}" for i in range(config.rooms)]
        for room in rooms:
            text = "the campaign starts"
            offset = await asyncio.to_thread(system.post, room, text)
            history.add("chaos", "posted", room=room, offset=offset, sender="chaos", msg_id=text)
        say(
            f"chaos: seed {config.seed}, redis {config.redis}, {config.clients} clients in "
            f"{len(rooms)} rooms, {config.seconds:g}s of faults; logs in {directory}"
        )
        faults = config.faults if config.faults is not None else faults_for(config.redis)
        nemesis = Nemesis(
            system,
            history,
            rng,
            faults,
            application=application,
            max_pause=config.max_pause,
            overlap=config.overlap,
            failover_first=config.failover_first,
            say=say,
        )
        clients = [
            ChaosClient(
                f"r{i + 1}" if reader else f"c{i + 1}",
                rooms[i % len(rooms)],
                system.ports,
                random.Random(rng.random()),
                history,
                READER if reader else ClientTimers(),
            )
            for i in range(config.clients)
            for reader in [config.readers > 0 and i % max(1, config.clients // config.readers) == 0]
        ]
        presence, connected = await _exercise(
            system, application, nemesis, clients, history, config, say
        )
        rooms_of = {c.name: c.room for c in clients}
        verdict = check(history, rooms_of, presence)
        verdict.events = check_events(history, rooms_of, connected)
        violations = verdict.violations + verdict.events.violations
        for violation in violations[:MAX_SHOWN]:
            around = "; ".join(f.describe() for f in history.faults_around(violation.t))
            say(
                f"chaos: {violation.kind} t={violation.t:.1f}s {violation.detail}; "
                f"faults around: {around or 'none'}"
            )
        if len(violations) > MAX_SHOWN:
            say(f"chaos: ... and {len(violations) - MAX_SHOWN} more violations")
        for problem in verdict.presence:
            say(f"chaos: presence {problem}")
        return verdict
    finally:
        await system.stop()
        await application.stop()
        if config.keep is not None:
            shutil.copytree(directory, config.keep, dirs_exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)


async def _exercise(
    system: System,
    application: Application,
    nemesis: Nemesis,
    clients: list[ChaosClient],
    history: History,
    config: CampaignConfig,
    say: Callable[[str], None],
) -> tuple[list[str], set[str]]:
    """Run the clients through the faults and the quiet period, then let the events
    drain into `history.deliveries`; the presence problems, and the clients connected
    at the end."""
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(c.run(http, stop)) for c in clients]
        problems = []
        try:
            try:
                await nemesis.run(config.seconds)
            except SystemFailure as failure:  # a node that does not come back is a finding
                problems.append(f"a fault did not heal: {failure}")
            say(f"chaos: t={history.now():6.1f}s quiet: healing, sends stop")
            for client in clients:
                client.sending = False
            application.heal()
            try:
                await system.heal()
            except SystemFailure as failure:
                problems.append(f"the system did not heal: {failure}")
            if not await _settled(clients, history):
                say("chaos: the clients did not all catch up in the quiet period")
            problems += await _presence(system, clients)
            connected = {c.name for c in clients if c.connected}
            waiting = await application.drained(system)
            if waiting is not None:
                say(f"chaos: the events did not drain: {waiting}")
            history.deliveries = application.deliveries(history)
            return problems, connected
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _settled(clients: list[ChaosClient], history: History) -> bool:
    """Wait (bounded) until every client is connected, has nothing unacked, and holds
    every acked message of its room."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT
    while loop.time() < deadline:
        acked = {(r.client, r.msg_id, r.room) for r in history.records if r.kind == "acked"}
        got: dict[str, set[tuple[str, str]]] = {c.name: set() for c in clients}
        for record in history.records:
            if record.kind == "message" and record.client in got:
                got[record.client].add((record.sender, record.msg_id))
        if all(c.connected and c.idle for c in clients) and all(
            (sender, msg_id) in got[c.name]
            for c in clients
            for sender, msg_id, room in acked
            if room == c.room
        ):
            return True
        await asyncio.sleep(0.5)
    return False


async def _presence(system: System, clients: list[ChaosClient]) -> list[str]:
    """Wait (bounded) until `members` on every node equals the connected clients of each
    room and every node is ready; the differences left, if any."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PRESENCE_TIMEOUT
    rooms = sorted({c.room for c in clients})
    while True:
        problems = []
        for index in range(len(system.nodes)):
            node = system.node_name(index)
            if not await asyncio.to_thread(system.ready, index):
                problems.append(f"{node} is not ready")
            for room in rooms:
                want = sorted(c.name for c in clients if c.room == room and c.connected)
                have = await asyncio.to_thread(system.members, index, room)
                if have is None or sorted(have) != want:
                    problems.append(f"{node} {room}: members {have}, connected {want}")
        if not problems or loop.time() > deadline:
            return problems
        await asyncio.sleep(1.0)
