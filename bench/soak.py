"""Soak: faults at random against a farm of browser devices, then check that Corral is whole.

    .venv/bin/python bench/soak.py [--minutes 10] [--seed N] [--devices 4..8] [--json PATH]

Runs its own installation: a data dir and a runtime dir in /tmp, the embedded
Postgres in that data dir, devices on network ``none``. A ``corral serve``
process is the host; this script drives it as a client (``Corral.start(…,
role="client")``: provision and remove go through the database, as the CLI's
would). Every few seconds (seeded; the seed is printed) it injects one fault
and prints it:

- ``provision`` / ``remove`` one device (the farm stays within ``--devices``);
- ``docker_kill`` a device's container;
- ``agent_kill``: SIGKILL the agent inside a container (``pkill`` through ``docker exec``);
- ``host_kill``: SIGKILL ``corral serve`` and start a new one;
- ``postgres_restart``: ``pg_ctl stop -m fast|immediate``, 1-4 s down, start again.

Each fault is watched until it is survived: the device is ``ready`` with its
agent connected to the current host (a *new* agent process after a kill; the
connection is traced from the agent's socket to the host's through ``ss``), a
removed device is gone, a new host has every device back, and after a Postgres
restart the host holds the host lock again. A fault on a device the soak then
removes counts as superseded. After the fault phase the farm settles (no faults)
and is checked:

- every job terminal; Docker and the database agree (running containers == devices
  that should run, no container without a live device); every live device ready;
- no runtime dir, ``hub.sock`` or process left for a removed device, no process of
  a killed host left behind;
- file descriptors and RSS of the host within 10 % of their level one minute after
  it started. A restarted host is a new process: this is measured on the last
  host, from its own first minute, with the farm brought back to the size it had
  then (the host holds sockets per device);
- every fault survived.

Prints counts per fault (injected, survived, lost, superseded), recovery times and
pass/fail per check; ``--json`` writes them (see bench/report.py); exits 1 when a
check fails. Cleans up everything it made (containers by the installation's owner
label, processes, Postgres, temp dirs). The choice of each fault comes from the
seed; what it hits also depends on the farm's state at that moment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from sqlalchemy import text

from backend.config import Settings
from backend.corral import Corral
from backend.types import DeviceInfo
from bench.report import Report
from bench.soak_checks import check_all, tally
from bench.soak_farm import (
    Container,
    Containers,
    HostProcess,
    Postgres,
    agent_peers,
    processes_with_env,
    socket_inodes,
)
from bench.soak_model import FAULTS, TERMINAL_JOBS, View, Watch, parse_devices

HEAVY = {"host_kill", "postgres_restart"}
DEVICE_FAULTS = {"provision", "docker_kill", "agent_kill"}
HEAVY_GAP_S = 30.0
"""At most one host kill or Postgres restart per this many seconds, and none while
the last one is still healing: each takes the whole farm away for a while."""
HOST_LOCK_KEY = 0x636F7272616C
"""backend.corral's host lock ("corral"); pg_locks shows a bigint key as classid/objid."""
BASELINE_AFTER_S = 60.0
OBSERVE_EVERY_S = 2.0


class NotInjected(Exception):
    """The fault found nothing to hit (a stale view); it is counted as skipped, not watched."""


@dataclass
class Soak:
    """One run: the installation it drives, what it injected and what it last saw."""

    args: argparse.Namespace
    root: Path
    settings: Settings
    host: HostProcess
    postgres: Postgres
    docker: Containers
    client: Corral | None = None
    rng: random.Random = field(default_factory=random.Random)
    started: float = field(default_factory=time.monotonic)
    watches: list[Watch] = field(default_factory=list)
    removal_requested: set[str] = field(default_factory=set)
    view: View | None = None
    last_heavy: float = -HEAVY_GAP_S
    restart_seconds: list[float] = field(default_factory=list)
    injection_errors: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {message}", flush=True)

    # -- seeing -----------------------------------------------------------------------------

    async def observe(self) -> View:
        assert self.client is not None
        devices: dict[str, DeviceInfo] | None
        try:
            devices = {d.id: d for d in await self.client.devices(include_removed=True)}
        except Exception:
            devices = None
        host_alive = self.host.alive()
        pid = self.host.pid if host_alive else None
        containers, agents, connected = await asyncio.to_thread(self._docker_view, pid)
        view = View(
            time.monotonic(), devices, containers, agents, connected, host_alive, await self.lock_held()
        )
        self.view = view
        return view

    def _docker_view(
        self, host_pid: int | None
    ) -> tuple[dict[str, Container], dict[str, list[int]], set[str]]:
        containers = self.docker.snapshot()
        agents = {d: self.docker.agent_pids(c.id) for d, c in containers.items() if c.status == "running"}
        host_sockets = socket_inodes(host_pid) if host_pid is not None else set()
        connected = {d for d, pids in agents.items() if any(agent_peers(pid) & host_sockets for pid in pids)}
        return containers, agents, connected

    async def lock_held(self) -> bool | None:
        assert self.client is not None
        query = text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = :high AND objid = :low AND objsubid = 1"
        )
        try:
            async with self.client.database.engine.connect() as connection:
                result = await connection.execute(
                    query, {"high": HOST_LOCK_KEY >> 32, "low": HOST_LOCK_KEY & 0xFFFFFFFF}
                )
                return bool(result.scalar())
        except Exception:
            return None

    def live(self, view: View) -> list[DeviceInfo]:
        """Devices the soak wants: not removed, no removal asked."""
        return [
            d
            for d in (view.devices or {}).values()
            if d.state != "removed" and d.id not in self.removal_requested
        ]

    async def observer(self) -> None:
        """Every few seconds: look, settle watches, take the host's one-minute sample."""
        while True:
            try:
                view = await self.observe()
            except Exception as exc:  # a container gone mid-call, ss timing out: look again
                self.say(f"(could not look at the farm: {exc!r})")
                await asyncio.sleep(OBSERVE_EVERY_S)
                continue
            self.judge(view)
            if (
                view.host_alive
                and self.host.baseline is None
                and view.at - self.host.started_at >= BASELINE_AFTER_S
                and view.devices is not None
            ):
                with contextlib.suppress(Exception):
                    self.host.baseline = self.host.sample(len(self.live(view)))
                    sample = self.host.baseline
                    self.say(
                        f"host pid {self.host.pid} one minute in: {sample.fds} fds, "
                        f"RSS {sample.rss / 2**20:.1f} MiB, {sample.devices} devices"
                    )
            await asyncio.sleep(OBSERVE_EVERY_S)

    def judge(self, view: View, final: bool = False) -> None:
        for watch in self.watches:
            if watch.outcome is not None:
                continue
            if watch.device_id in self.removal_requested and watch.fault != "remove":
                watch.outcome = "superseded"
                self.say(f"#{watch.number} {watch.fault}: superseded (the device was removed)")
                continue
            if view.devices is not None and self.survived(watch, view):
                watch.outcome = "survived"
                watch.recovered_after = view.at - watch.at
                self.say(f"#{watch.number} {watch.fault}: survived after {watch.recovered_after:.1f} s")
            elif final or view.at - watch.at > self.args.recovery_timeout:
                watch.outcome = "lost"
                watch.detail = self.why_not(watch, view)
                self.say(f"#{watch.number} {watch.fault}: LOST ({watch.detail})")

    def survived(self, watch: Watch, view: View) -> bool:
        assert view.devices is not None
        device_id = watch.device_id
        if watch.fault == "remove":
            assert device_id is not None
            device = view.devices.get(device_id)
            return (
                device is not None
                and device.state == "removed"
                and device_id not in view.containers
                and not self.settings.device_dir(device_id).exists()
            )
        if watch.fault in ("provision", "docker_kill", "agent_kill"):
            assert device_id is not None
            fresh = not watch.agents_before & set(view.agents.get(device_id, []))
            return view.ready(device_id) and fresh
        wanted = watch.ready_before - self.removal_requested
        back = view.host_alive and all(view.ready(d) for d in wanted)
        if watch.fault == "postgres_restart":
            return back and view.host_lock is True
        return back

    def why_not(self, watch: Watch, view: View) -> str:
        if view.devices is None:
            return "the database could not be read"
        if watch.device_id is not None:
            device = view.devices.get(watch.device_id)
            container = view.containers.get(watch.device_id)
            return (
                f"device {device.state if device else 'missing'}"
                f"{f' ({device.reason})' if device and device.reason else ''}, container "
                f"{container.status if container else 'none'}, agent "
                f"{'connected' if watch.device_id in view.connected else 'not connected'}"
            )
        missing = sorted(d for d in watch.ready_before - self.removal_requested if not view.ready(d))
        return f"host alive {view.host_alive}, host lock {view.host_lock}, not ready again: {missing}"

    # -- faults -----------------------------------------------------------------------------

    def killable(self, view: View) -> list[str]:
        """Live devices with a running container and no device fault still healing.

        One kill at a time per device: a second kill while the first heals would
        blur which one the recovery answers (and hit a container already down).
        """
        healing = {w.device_id for w in self.watches if w.outcome is None and w.fault in DEVICE_FAULTS}
        return sorted(
            d.id
            for d in self.live(view)
            if d.id not in healing and d.id in view.containers and view.containers[d.id].status == "running"
        )

    def choose(self, view: View) -> str:
        low, high = self.args.devices
        live = self.live(view)
        if len(live) < low:
            return "provision"
        weights = dict(FAULTS)
        if len(live) >= high:
            del weights["provision"]
        if len(live) <= low:
            del weights["remove"]
        if not self.killable(view):
            del weights["docker_kill"], weights["agent_kill"]
        # One farm-wide fault at a time, each given its full recovery time with the
        # same host: a host kill must not mask a Postgres restart the host did not survive.
        heavy_pending = any(w.outcome is None and w.fault in HEAVY for w in self.watches)
        if heavy_pending or view.at - self.last_heavy < HEAVY_GAP_S:
            for fault in HEAVY:
                weights.pop(fault, None)
        kinds = sorted(weights)
        return self.rng.choices(kinds, [weights[k] for k in kinds])[0]

    async def inject(self, number: int, fault: str, view: View) -> None:
        assert self.client is not None
        watch = Watch(number, fault, None, time.monotonic())
        live = sorted(d.id for d in self.live(view))
        running = self.killable(view)
        names = {d.id: d.name for d in (view.devices or {}).values()}
        if fault == "provision":
            (device,) = await self.client.provision("browser", 1)
            watch.device_id = device.id
            self.say(f"#{number} provision -> {device.name} ({device.id})")
        elif fault == "remove":
            watch.device_id = self.rng.choice(live)
            self.removal_requested.add(watch.device_id)
            self.say(f"#{number} remove {names[watch.device_id]} ({watch.device_id})")
            await self.client.remove([watch.device_id])
        elif fault in ("docker_kill", "agent_kill"):
            watch.device_id = self.rng.choice(running)
            container = view.containers[watch.device_id]
            watch.agents_before = frozenset(view.agents.get(watch.device_id, []))
            self.say(f"#{number} {fault} {names[watch.device_id]} (container {container.id[:12]})")
            if fault == "docker_kill":
                if not await asyncio.to_thread(self.docker.kill, container.id):
                    raise NotInjected("the container had stopped already; nothing was killed")
            elif await asyncio.to_thread(self.docker.kill_agent, container.id) == 1:
                self.say(f"#{number} (no agent was running in {names[watch.device_id]} at that moment)")
        elif fault == "host_kill":
            self.last_heavy = time.monotonic()
            watch.ready_before = frozenset(d for d in live if view.ready(d))
            old = self.host.pid
            self.host.kill()
            self.say(f"#{number} host_kill: SIGKILL corral serve pid {old}; starting a new one")
            begin = time.monotonic()
            await asyncio.to_thread(self.host.start)
            self.restart_seconds.append(time.monotonic() - begin)
            self.say(f"#{number} new host pid {self.host.pid} serving after {self.restart_seconds[-1]:.1f} s")
        elif fault == "postgres_restart":
            self.last_heavy = time.monotonic()
            watch.ready_before = frozenset(d for d in live if view.ready(d))
            mode = self.rng.choice(["fast", "immediate"])
            down = self.rng.uniform(1.0, 4.0)
            self.say(f"#{number} postgres_restart: pg_ctl stop -m {mode}, down {down:.1f} s")
            await asyncio.to_thread(self.postgres.stop, mode)
            await asyncio.sleep(down)
            await asyncio.to_thread(self.postgres.start)
            self.say(f"#{number} Postgres up again (postmaster pid {self.postgres.postmaster_pid()})")
        self.watches.append(watch)

    async def fault_phase(self) -> None:
        end = time.monotonic() + self.args.minutes * 60
        number = 0
        while time.monotonic() < end:
            await asyncio.sleep(self.rng.uniform(2.0, 6.0))
            view = self.view or await self.observe()
            if view.devices is None:
                view = await self.observe()
                if view.devices is None:
                    self.say("database unreadable; no fault this time")
                    continue
            number += 1
            fault = self.choose(view)
            try:
                await self.inject(number, fault, view)
            except NotInjected as exc:
                self.skipped[fault] += 1
                self.say(f"#{number} {fault}: skipped ({exc})")
            except Exception as exc:
                self.injection_errors.append(f"#{number} {fault}: {exc!r}")
                self.say(f"#{number} {fault}: could not be injected: {exc!r}")
                self.watches.append(
                    Watch(number, fault, None, time.monotonic(), outcome="lost", detail=repr(exc))
                )

    # -- settling and checking ------------------------------------------------------------

    async def jobs(self) -> list[Any] | None:
        assert self.client is not None
        try:
            return list(await self.client.jobs(limit=1_000_000))
        except Exception:
            return None

    async def resize(self, size: int) -> None:
        """Bring the farm back to *size* live devices (not faults: nothing is watched)."""
        assert self.client is not None
        view = await self.observe()
        live = sorted(d.id for d in self.live(view))
        if len(live) < size:
            created = await self.client.provision("browser", size - len(live))
            self.say(f"settle: provision {', '.join(d.name for d in created)} (back to {size} devices)")
        for device_id in self.rng.sample(live, max(0, len(live) - size)):
            self.removal_requested.add(device_id)
            await self.client.remove([device_id])
            self.say(f"settle: remove {device_id} (back to {size} devices)")

    async def settle(self) -> tuple[View, list[Any] | None]:
        """No faults until the farm is calm and the host's baseline is 30 s old (or --settle-max)."""
        begin = time.monotonic()
        self.say(f"settling: no faults from now on (at least {self.args.settle:.0f} s)")
        if self.host.baseline is not None:
            await self.resize(self.host.baseline.devices)
        while True:
            await asyncio.sleep(OBSERVE_EVERY_S)
            view = self.view or await self.observe()
            jobs = await self.jobs()
            now = time.monotonic()
            calm = (
                view.devices is not None
                and jobs is not None
                and all(job.state in TERMINAL_JOBS for job in jobs)
                and all(watch.outcome is not None for watch in self.watches)
                and all(view.ready(d.id) for d in self.live(view))
            )
            baseline = self.host.baseline
            measured = baseline is not None and now - baseline.at >= 30
            if now - begin >= self.args.settle and calm and measured:
                self.say(f"settled after {now - begin:.0f} s")
                return view, jobs
            if now - begin >= self.args.settle_max:
                self.say(f"not settled after {self.args.settle_max:.0f} s; checking as it is")
                return view, jobs


async def run(args: argparse.Namespace, report: Report) -> None:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    report.detail("seed", seed)
    root = Path(tempfile.mkdtemp(prefix="cso-", dir="/tmp"))  # short: unix socket paths
    os.chmod(root, 0o755)  # as root, the embedded Postgres runs as the pgserver user
    data = root / "data"
    data.mkdir(mode=0o755)
    settings = Settings(data_dir=data, runtime_dir=root / "run", device_network="none")
    env = {
        **os.environ,
        "CORRAL_DATA_DIR": str(data),
        "CORRAL_RUNTIME_DIR": str(settings.runtime_dir),
        "CORRAL_DEVICE_NETWORK": "none",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    env.pop("CORRAL_DATABASE_URL", None)
    low, high = args.devices
    print(
        f"soak: seed {seed}, {args.minutes:g} min of faults, {low}..{high} devices, in {root} "
        f"(host log {root / 'serve.log'})",
        flush=True,
    )
    soak = Soak(
        args,
        root,
        settings,
        HostProcess(env, root / "serve.log"),
        Postgres(settings.pgdata_dir),
        Containers(settings),
        rng=random.Random(seed),
    )
    observer: asyncio.Task[None] | None = None
    try:
        soak.client = await Corral.start(settings, role="client", stream=False)
        await asyncio.to_thread(soak.host.start)
        soak.say(f"host pid {soak.host.pid} serving; provisioning {low} devices")
        created = await soak.client.provision("browser", low)
        final = await soak.client.wait_for([d.id for d in created], {"ready"}, timeout=300)
        if any(d.state != "ready" for d in final):
            raise RuntimeError(
                f"the first devices did not come up: {[(d.name, d.state, d.reason) for d in final]}"
            )
        soak.started = time.monotonic()
        soak.say("first devices ready; faults start")
        observer = asyncio.create_task(soak.observer(), name="soak-observer")
        await soak.fault_phase()
        view, jobs = await soak.settle()
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)
        view = await soak.observe()
        soak.judge(view, final=True)
        tally(soak, report)
        print()
        check_all(soak, report, view, jobs)
    finally:
        if observer is not None:
            observer.cancel()
            await asyncio.gather(observer, return_exceptions=True)
        await cleanup(soak, settings)


async def cleanup(soak: Soak, settings: Settings) -> None:
    """Stop and remove everything the soak made, whatever state it is in."""
    await asyncio.to_thread(soak.host.stop)
    removed = await asyncio.to_thread(soak.docker.remove_all)
    if soak.client is not None:
        with contextlib.suppress(Exception):
            await soak.client.stop()
    if soak.postgres.postmaster_pid() is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(soak.postgres.stop, "fast")
    leftovers = await asyncio.to_thread(processes_with_env, f"CORRAL_DATA_DIR={settings.data_dir}")
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    soak.docker.close()
    if soak.args.json and (soak.root / "serve.log").exists():
        # The hosts' log outlives the run, next to the figures: what a failed check needs.
        shutil.copyfile(soak.root / "serve.log", Path(soak.args.json).with_suffix(".serve.log"))
    shutil.rmtree(soak.root, ignore_errors=True)
    print(f"cleaned up: {removed} containers, {len(leftovers)} stray processes, {soak.root}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the fault phase (default 10)")
    parser.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    parser.add_argument(
        "--devices", type=parse_devices, default=(4, 8), help="farm size, LOW..HIGH (default 4..8)"
    )
    parser.add_argument(
        "--settle", type=float, default=30.0, help="seconds without faults before the checks (min)"
    )
    parser.add_argument(
        "--settle-max", type=float, default=300.0, help="check anyway after this long settling"
    )
    parser.add_argument(
        "--recovery-timeout", type=float, default=120.0, help="seconds a fault may take to heal"
    )
    parser.add_argument(
        "--json", help="write the figures and checks here as JSON (and the hosts' log next to it, .serve.log)"
    )
    args = parser.parse_args(argv)
    # The soak's own Corral (a client) logs how it copes, e.g. with Postgres gone: say whose lines they are.
    logging.basicConfig(level=logging.WARNING, format="    (soak's client) %(name)s: %(message)s")
    report = Report("soak")
    try:
        asyncio.run(run(args, report))
    except KeyboardInterrupt:
        report.error("interrupted")
    except Exception as exc:
        report.error(f"the soak itself failed: {exc!r}")
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
