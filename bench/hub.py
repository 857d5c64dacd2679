"""Agent hub benchmark: command round-trips, event persistence, idle connections.

The hub (:class:`backend.hub.Hub`, one unix socket per device) runs in this
process with the real event log (:class:`backend.hub.eventlog.EventLog`) on an
embedded Postgres in a temporary data directory, wired as the host wires it
(``backend.corral._HubEvents``): every command and its result becomes an
``events`` row, and so does every agent event. The agents are real websockets
clients in a separate process (this script with ``--agents``), one connection per
device, each answering its commands as the real agent does (pydantic decode,
encode).

Figures, each with the ratio to a baseline measured in the same run: a bare
websockets server on one unix socket (no auth, no hub, no persistence) sending
the same command frames to the same client code in the same kind of process.

- command round-trip (backend -> agent -> result), p50/p99: one agent, commands
  back to back; 100 agents, each sent 5 commands a second (target p99 <= 3 ms);
  after the run, the check that every command has its row in ``events``;
- events persisted per second: 100 agents each send ``--events`` events as fast
  as they can; from the go until the last row is in Postgres (target >= 20,000/s);
- idle agents with keepalive: the RSS growth per connection of a fresh process
  serving 1,000 connected agents (``--idle-probe``: hub, then bare; target <=
  20 KiB); each device's socket server is counted apart (a detail).

Run from the repository root:
``.venv/bin/python bench/hub.py [--seconds 10] [--events 1000] [--idle 1000] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.asyncio.server import ServerConnection, unix_serve
from websockets.exceptions import ConnectionClosed

from agent.protocol import (
    MAX_FRAME_BYTES,
    Command,
    Event,
    Hello,
    Result,
    decode,
    decode_credential,
    encode,
    session_token,
)
from backend.config import Settings, rundir
from backend.corral import _HubEvents
from backend.db import Database
from backend.devices.store import DeviceStore
from backend.hub import Hub
from backend.hub.eventlog import EventLog
from backend.supervisor import Supervisor
from bench.report import Report

TARGET_P99_MS = 3.0
TARGET_EVENTS_S = 20_000.0
TARGET_IDLE_KIB = 20.0
RATE_PER_AGENT = 5.0
"""Commands a second to each of the 100 agents (the reference's 100 clients x 5/s)."""
BUSY_AGENTS = 100
SEQUENTIAL_COMMANDS = 2000


def _device(n: int) -> str:
    return f"dev-{n:04d}"


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the agents' process ------------------------------------------------------------


async def _agent(path: str, device_id: str | None, credential: str | None) -> ClientConnection:
    """Connect like the real agent (token, keepalive, hello); None: a bare baseline client."""
    headers = {}
    if credential is not None:
        data = await asyncio.to_thread(Path(credential).read_bytes)
        headers["Authorization"] = f"Bearer {session_token(decode_credential(data))}"
    connection = await unix_connect(
        path,
        uri="ws://corral-hub/agent",
        additional_headers=headers,
        max_size=MAX_FRAME_BYTES,
        ping_interval=10,
        open_timeout=30,
        close_timeout=1,
    )
    if device_id is not None:
        await connection.send(encode(Hello(device_id=device_id, agent_version="bench")))
    return connection


async def _answer(connection: ClientConnection) -> None:
    """Answer every command as the real agent does: decode, then encode a result."""
    with contextlib.suppress(ConnectionClosed):
        async for frame in connection:
            message = decode(frame)
            if isinstance(message, Command):
                await connection.send(encode(Result(id=message.id, ok=True, data={"pong": message.args})))


def _events(count: int) -> list[str]:
    return [
        encode(Event(kind="log", data={"level": "info", "message": f"event {n}", "n": n}))
        for n in range(count)
    ]


async def _send_all(connection: ClientConnection, frames: list[str]) -> None:
    for frame in frames:
        await connection.send(frame)


async def agents_main(targets: list[tuple[str, str | None, str | None]]) -> None:
    """``--agents``: connect every target, say ``ready``, then obey stdin: ``prepare N`` (encode N
    events, answer ``prepared``: the encoding is not what is measured), ``go`` (every agent sends
    them, answer ``sent``), ``quit``."""
    _raise_fd_limit()
    connections: list[ClientConnection] = []
    for start in range(0, len(targets), 50):  # not all at once: the hub's accept backlog is small
        connections += await asyncio.gather(*(_agent(*target) for target in targets[start : start + 50]))
    answering = [asyncio.create_task(_answer(connection)) for connection in connections]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    frames: list[str] = []
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).split():
        if line[0] == "prepare":
            frames = _events(int(line[1]))
            print("prepared", flush=True)
        elif line[0] == "go":
            cpu = time.process_time()
            await asyncio.gather(*(_send_all(connection, frames) for connection in connections))
            print(f"sent {time.process_time() - cpu:.6f}", flush=True)
        elif line[0] == "quit":
            break
    await asyncio.gather(*(connection.close() for connection in connections))
    await asyncio.gather(*answering)


class Agents:
    """The agents' process, seen from the hub's side."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, args: list[str]) -> Agents:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--agents",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        agents = cls(process)
        await agents.expect("ready", timeout=120)
        return agents

    async def expect(self, word: str, timeout: float) -> list[str]:
        """Wait for a line starting with *word*; returns the rest of its words."""
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode().split()
        if not line or line[0] != word:
            raise RuntimeError(f"agents' process said {line!r}, expected {word!r}")
        return line[1:]

    async def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.tell("quit")
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _hub_targets(settings: Settings, count: int) -> list[str]:
    args = []
    for n in range(count):
        paths = settings.device_paths(_device(n))
        args += ["--target", f"{paths.hub_socket}|{_device(n)}|{paths.agent_credential}"]
    return args


def _bare_targets(path: Path, count: int) -> list[str]:
    return [arg for _ in range(count) for arg in ("--target", f"{path}||")]


# --- the bare baseline server -------------------------------------------------------


class BareServer:
    """A bare websockets server on one unix socket: sends command frames, matches replies by id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections: list[ServerConnection] = []
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._ids = 0
        self._server: Any = None

    async def start(self) -> None:
        self._server = await unix_serve(
            self._handle, str(self.path), max_size=MAX_FRAME_BYTES, compression=None, ping_interval=10
        )

    async def _handle(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        try:
            async for frame in connection:
                message = decode(frame)
                if isinstance(message, Result):
                    future = self._waiting.pop(message.id, None)
                    if future is not None:
                        future.set_result(None)
        except ConnectionClosed:
            pass
        finally:
            self.connections.remove(connection)

    async def command(self, index: int) -> None:
        self._ids += 1
        command_id = f"c{self._ids}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        await self.connections[index].send(encode(Command(id=command_id, name="ping", args={})))
        await future

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()


# --- measurements -------------------------------------------------------------------


async def _sequential(command: Callable[[], Awaitable[object]], count: int) -> list[float]:
    samples = []
    for _ in range(count + 100):
        started = time.perf_counter()
        await command()
        samples.append(time.perf_counter() - started)
    return samples[100:]  # the first ones warm up caches and the event log


async def _paced(command: Callable[[int], Awaitable[object]], agents: int, seconds: float) -> list[float]:
    """Each of *agents* gets RATE_PER_AGENT commands a second, phases spread at random."""
    samples: list[float] = []
    period = 1.0 / RATE_PER_AGENT
    end = time.perf_counter() + seconds

    async def one(index: int) -> None:
        await asyncio.sleep(random.uniform(0, period))
        next_at = time.perf_counter()
        while next_at < end:
            started = time.perf_counter()
            await command(index)
            samples.append(time.perf_counter() - started)
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    await asyncio.gather(*(one(index) for index in range(agents)))
    return samples


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def _count_rows(database: Database, where: str) -> int:
    connection = await database.connect_raw()
    try:
        return int(await connection.fetchval(f"SELECT count(*) FROM events WHERE {where}"))
    finally:
        await connection.close()


async def idle_probe(kind: str, idle: int) -> None:
    """``--idle-probe``: in this fresh process, print the RSS growth per idle connection (KiB).

    Fresh, because memory freed by earlier phases would be reused and hide the cost.
    Prints ``connection <KiB>`` and, for the hub, ``server <KiB>`` (each device's socket server).
    """
    _raise_fd_limit()
    root = Path(tempfile.mkdtemp(prefix="crl-bench-idle-", dir="/tmp"))
    try:
        if kind == "hub":
            settings = Settings(data_dir=root / "data", runtime_dir=root / "run", device_uid=os.getuid())
            rundir.ensure_root(settings.runtime_dir)
            hub = Hub(settings)
            before = _rss()
            for n in range(idle):
                rundir.make_device_dir(settings.runtime_dir, _device(n), settings.effective_device_uid)
                await hub.listen(_device(n))
            listening = _rss()
            agents = await Agents.start(_hub_targets(settings, idle))
            try:
                await _until(lambda: all(hub.is_connected(_device(n)) for n in range(idle)), 60)
                await asyncio.sleep(1.0)  # let every keepalive task start its first wait
                connected = _rss()
            finally:
                await agents.stop()
                await hub.stop()
            print(f"server {(listening - before) / idle / 1024:.3f}", flush=True)
        else:
            bare = BareServer(root / "bare.sock")
            await bare.start()
            listening = _rss()
            agents = await Agents.start(_bare_targets(bare.path, idle))
            try:
                await _until(lambda: len(bare.connections) == idle, 60)
                await asyncio.sleep(1.0)
                connected = _rss()
            finally:
                await agents.stop()
                await bare.stop()
        print(f"connection {(connected - listening) / idle / 1024:.3f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _run_idle_probe(kind: str, idle: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--idle-probe", kind, "--idle", str(idle), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    if process.returncode != 0:
        raise RuntimeError(f"the {kind} idle probe failed (exit {process.returncode})")
    return {key: float(value) for key, value in (line.split() for line in out.decode().splitlines())}


async def measure_idle(report: Report, idle: int) -> None:
    hub = await _run_idle_probe("hub", idle)
    bare = await _run_idle_probe("bare", idle)
    report.figure(
        "idle_kib_per_agent",
        hub["connection"],
        "KiB",
        target=TARGET_IDLE_KIB,
        label=f"hub memory per idle agent with keepalive, {idle} agents",
    )
    report.figure(
        "bare_idle_kib_per_client", bare["connection"], "KiB", label="bare websockets server (baseline)"
    )
    report.ratio(
        "idle_vs_bare", hub["connection"], bare["connection"], label="ratio hub / bare per connection"
    )
    report.detail("hub_socket_server_kib_per_device", hub["server"])


async def measure_round_trips(
    report: Report, settings: Settings, hub: Hub, database: Database, root: Path, seconds: float
) -> None:
    bare = BareServer(root / "bare.sock")
    await bare.start()
    results: dict[str, tuple[float, float]] = {}
    commands_sent = 0
    try:
        for agents_count in (1, BUSY_AGENTS):
            agents = await Agents.start(_bare_targets(bare.path, agents_count))
            try:
                await _until(lambda count=agents_count: len(bare.connections) == count, 60)
                if agents_count == 1:
                    samples = await _sequential(lambda: bare.command(0), SEQUENTIAL_COMMANDS)
                else:
                    samples = await _paced(bare.command, agents_count, seconds)
            finally:
                await agents.stop()
            results[f"bare_{agents_count}"] = _percentiles(samples)

            agents = await Agents.start(_hub_targets(settings, agents_count))
            try:
                await _until(
                    lambda count=agents_count: all(hub.is_connected(_device(n)) for n in range(count)), 60
                )
                if agents_count == 1:
                    samples = await _sequential(
                        lambda: hub.command(_device(0), "ping", {}), SEQUENTIAL_COMMANDS
                    )
                else:
                    samples = await _paced(
                        lambda i: hub.command(_device(i), "ping", {}), agents_count, seconds
                    )
            finally:
                await agents.stop()
            commands_sent += len(samples) + (100 if agents_count == 1 else 0)
            results[f"hub_{agents_count}"] = _percentiles(samples)
            report.detail(f"samples_{agents_count}", len(samples))
    finally:
        await bare.stop()
    for agents_count, how in ((1, "back to back"), (BUSY_AGENTS, f"{RATE_PER_AGENT:g} commands/s each")):
        p50, p99 = results[f"hub_{agents_count}"]
        b50, b99 = results[f"bare_{agents_count}"]
        label = f"command round-trip, {agents_count} agent{'s' if agents_count > 1 else ''} ({how})"
        report.figure(f"rt_{agents_count}_p50_ms", p50, "ms", label=f"{label}: p50")
        report.figure(f"rt_{agents_count}_p99_ms", p99, "ms", target=TARGET_P99_MS, label=f"{label}: p99")
        report.figure(
            f"bare_{agents_count}_p99_ms", b99, "ms", label="bare websockets, same load: p99 (baseline)"
        )
        report.ratio(f"rt_{agents_count}_p99_vs_bare", p99, b99, label="ratio hub / bare p99")
        report.detail(f"bare_{agents_count}_p50_ms", b50)
    report.detail("commands_sent", commands_sent)


async def measure_events(
    report: Report, settings: Settings, hub: Hub, log: EventLog, database: Database, per_agent: int
) -> None:
    agents = await Agents.start(_hub_targets(settings, BUSY_AGENTS))
    try:
        await _until(lambda: all(hub.is_connected(_device(n)) for n in range(BUSY_AGENTS)), 60)
        total = BUSY_AGENTS * per_agent
        target_written = log.written + total
        await agents.tell(f"prepare {per_agent}")
        await agents.expect("prepared", timeout=60)
        started, cpu = time.perf_counter(), time.process_time()
        await agents.tell("go")
        await _until(lambda: log.written >= target_written, 300)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        (agents_cpu,) = await agents.expect("sent", timeout=60)
    finally:
        await agents.stop()
    report.figure(
        "events_persisted_s",
        total / elapsed,
        "events/s",
        target=TARGET_EVENTS_S,
        better="higher",
        label=f"agent events persisted, {BUSY_AGENTS} agents x {per_agent} events, go to last row in Postgres",
    )
    report.figure(
        "events_hub_cpu_us",
        cpu / total * 1e6,
        "us",
        label="CPU time of the hub's process per event (receive, decode, queue, insert)",
    )
    report.detail("events_agents_cpu_us", float(agents_cpu) / total * 1e6)
    stored = await _count_rows(database, "source = 'agent'")
    report.check("every_event_stored", stored == total, f"{stored} of {total} rows")


async def main(args: argparse.Namespace, report: Report) -> None:
    _raise_fd_limit()
    root = Path(tempfile.mkdtemp(prefix="crl-bench-hub-", dir="/tmp"))
    os.chmod(root, 0o755)  # as root, Postgres runs as its own user and must reach its data
    settings = Settings(
        data_dir=root / "data",
        runtime_dir=root / "run",
        device_uid=os.getuid(),
        agent_replace_interval=0.0,
    )
    await measure_idle(report, args.idle)
    devices = BUSY_AGENTS
    database = await Database.open(settings)
    supervisor = Supervisor()
    log = EventLog(database, supervisor)
    listener: _HubEvents | None = None
    hub: Hub | None = None
    try:
        connection = await database.connect_raw()
        await connection.executemany(
            "INSERT INTO devices (id, name, kind, state) VALUES ($1, $1, 'browser', 'ready')",
            [(_device(n),) for n in range(devices)],
        )
        await connection.close()
        rundir.ensure_root(settings.runtime_dir)
        for n in range(devices):
            rundir.make_device_dir(settings.runtime_dir, _device(n), settings.effective_device_uid)
        log.start()
        listener = _HubEvents(DeviceStore(database), log)
        hub = Hub(settings, listener)
        for n in range(BUSY_AGENTS):
            await hub.listen(_device(n))
        await measure_round_trips(report, settings, hub, database, root, args.seconds)
        await _until(lambda: log.queued == 0, 30)
        commands = await _count_rows(database, "source = 'hub' AND kind = 'command'")
        expected = report.details["commands_sent"]
        report.check("every_command_stored", commands == expected, f"{commands} rows for {expected} commands")
        await measure_events(report, settings, hub, log, database, args.events)
        report.detail("event_log_dropped", log.dropped)
    finally:
        if hub is not None:
            await hub.stop()
        if listener is not None:
            await listener.stop()
        await log.stop()
        await database.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="duration of the 100-agent round-trip run"
    )
    parser.add_argument("--events", type=int, default=1000, help="events each of the 100 agents sends")
    parser.add_argument("--idle", type=int, default=1000, help="idle agents for the memory figure")
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--agents", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--idle-probe", choices=["hub", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--target", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agents:
        targets = []
        for target in args.target:
            path, device_id, credential = target.split("|")
            targets.append((path, device_id or None, credential or None))
        asyncio.run(agents_main(targets))
    elif args.idle_probe:
        asyncio.run(idle_probe(args.idle_probe, args.idle))
    else:
        report = Report("hub")
        asyncio.run(main(args, report))
        sys.exit(report.finish(args.json))
