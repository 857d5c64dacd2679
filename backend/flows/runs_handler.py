"""The ``flow`` job handler: runs one flow run (or one single command) on its devices.

Why the backend orchestrates and the agent executes single commands: the run's
state (variables, roles spanning several devices, ``runFlow``/``repeat``, which
step is next) lives here, next to Postgres, so every step is recorded durably
as it happens and a run outlives an agent restart; only the backend sees all
the devices of a role flow. The agent gets one ``command`` at a time through
the hub and does it with its own waiting.

A run goes ``queued -> running -> passed | failed | cancelled``:

- a device runs one run at a time, whoever started it (the window, the CLI,
  a script): a run whose device is busy with another run stays ``queued``
  until it is free (its job's progress says so), and can be cancelled there;
- the devices are checked first (they exist, are ready, their agent is
  connected; an agent that is reconnecting gets a few seconds), else the run
  fails naming the device and why;
- every agent command goes through :meth:`Hub.command`; a device that answers
  with an error, does not answer, or whose agent disconnects fails its step
  with that reason, and the run fails with ``<step>: <reason>``;
- a cancel of the job (``cancel_flow_run``, Ctrl-C of ``corral flow run``)
  cancels the step in flight and ends the run ``cancelled``; the device is left
  as it is, usable;
- a host that stops mid-run (its worker's grace ran out) ends the run
  ``failed``, interrupted; one killed outright is found when the job is claimed
  again (:meth:`FlowRuns.begin`): no step is ever run or recorded twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from sqlalchemy import select

from agent.commands import parse_command
from backend.config import Settings
from backend.db import Database
from backend.db.models import Job
from backend.db.notify import channel
from backend.devices.exceptions import UnknownDevice
from backend.devices.states import DeviceState
from backend.devices.store import DeviceStore
from backend.exceptions import CorralError
from backend.flows.interpreter import execute
from backend.flows.loading import from_sources
from backend.flows.model import DEFAULT_ROLE, Call, Executor, FlowOutcome, Observer, StepEvent
from backend.flows.runs import FLOW_JOB, FlowRuns
from backend.flows.runs_errors import InvalidRun, RunError, RunFailed
from backend.flows.runs_record import StepRecorder
from backend.hub import Hub, HubError
from backend.jobs.context import Handler, JobContext
from backend.jobs.exceptions import JobCancelled

__all__ = ["AGENT_WAIT", "HUB_GRACE", "FlowRunner", "command_label"]

log = logging.getLogger(__name__)

AGENT_WAIT = 10.0
"""Seconds a run waits at its start for a device's agent that is (re)connecting."""
HUB_GRACE = 5.0
"""The hub gives up this long after the command's own timeout (the agent times out first)."""
_CANCEL_POLL = 1.0
"""Seconds between looks at a job's cancel flag when no notification woke us."""
_USABLE = (DeviceState.READY, DeviceState.BUSY)
_BUSY_POLL = 1.0
"""Seconds between looks at the cancel flag while a run waits for a busy device."""

Body = Callable[[Executor, Observer], Coroutine[Any, Any, FlowOutcome]]


class StepError(RunError):
    """A step failed on its device; the message is the reason."""


def command_label(name: str, args: Mapping[str, Any]) -> str:
    """``tap target.css=#submit``: a single command as a step label, in ``corral exec``'s words.

    Only what differs from the defaults shows, so the raw and the validated
    args (every default filled in) give the same label; *args* must be valid.
    Typed text is not shown (``input_text text=<7 characters>``): labels are stored
    and shown everywhere, and what ``corral exec`` types is often a password.
    """
    given = parse_command(name, dict(args)).model_dump(mode="json", exclude_defaults=True)
    shown = " ".join(
        f"{key}=<{len(str(value))} characters>"
        if name == "input_text" and key == "text"
        else f"{key}={value}"
        for key, value in _dotted(given)
        if key != "timeout"
    )
    return f"{name} {shown}".strip()


def _dotted(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            pairs.extend(_dotted(value, f"{prefix}{key}."))
        elif value is not None:
            pairs.append((f"{prefix}{key}", value))
    return pairs


class FlowRunner:
    """Job handler for :data:`~backend.flows.runs.FLOW_JOB`; see the module docstring."""

    def __init__(
        self, settings: Settings, database: Database, runs: FlowRuns, store: DeviceStore, hub: Hub
    ) -> None:
        self._settings = settings
        self._database = database
        self._runs = runs
        self._store = store
        self._hub = hub
        self._active: dict[int, tuple[JobContext, asyncio.Task[FlowOutcome]]] = {}
        self._device_locks: dict[str, asyncio.Lock] = {}
        """Per device: held by the run using it (runs are carried out by this host only)."""
        self._listening = False
        self._check: asyncio.Task[None] | None = None

    def handlers(self) -> dict[str, Handler]:
        return {FLOW_JOB: self.run}

    async def run(self, job: JobContext) -> None:
        """Run the job's run to its end. Raises RunFailed (a failed run), JobCancelled (a cancelled one)."""
        self._listen()
        run_id = int(job.payload["run"])
        devices = {str(role): str(device) for role, device in dict(job.payload["devices"]).items()}
        held = await self._hold_devices(job, run_id, devices)
        try:
            await self._run_held(job, run_id, devices)
        finally:
            for lock in held:
                lock.release()

    async def _hold_devices(
        self, job: JobContext, run_id: int, devices: Mapping[str, str]
    ) -> list[asyncio.Lock]:
        """Take the run's devices (in one order, so two role runs never wait on each other).

        Two flows on one page break each other, so a device runs one run at a
        time. While waiting the run stays queued; a cancel ends it ``cancelled``.
        """
        held: list[asyncio.Lock] = []
        try:
            for device_id in sorted(set(devices.values())):
                lock = self._device_locks.setdefault(device_id, asyncio.Lock())
                while True:
                    try:
                        await asyncio.wait_for(lock.acquire(), _BUSY_POLL)
                        break
                    except TimeoutError:
                        # Writing progress is also how a cancel reaches a waiting job.
                        await job.progress(0.0, f"waiting: device {device_id} is running another flow")
                held.append(lock)
        except BaseException as exc:
            for lock in held:
                lock.release()
            if isinstance(exc, JobCancelled):
                await self._runs.finish(run_id, "cancelled")
            raise
        return held

    async def _run_held(self, job: JobContext, run_id: int, devices: dict[str, str]) -> None:
        begun, run = await self._runs.begin(run_id)
        try:
            if begun != "start":
                # Over already (or just ended as interrupted): the job mirrors the run.
                if run.state == "cancelled":
                    raise JobCancelled()
                if run.state == "failed":
                    raise RunFailed(run.error or "failed")
                return
            outcome = await self._run(job, run_id, devices, run.steps_total)
        finally:
            await self._reap()
        if not outcome.passed:
            raise RunFailed(outcome.error or "failed")

    async def _run(self, job: JobContext, run_id: int, devices: dict[str, str], total: int) -> FlowOutcome:
        async def progress(done: int, steps: int, label: str) -> None:
            try:
                await job.progress(done / steps if steps else 0.0, label)
            except JobCancelled:
                self._cancel(job.id)

        recorder = StepRecorder(self._database, self._settings.data_dir, run_id, devices, total, progress)
        try:
            await self._check_devices(devices)
            body = self._body(job.payload)
            outcome = await self._execute(job, body, self._executor(devices), recorder)
        except JobCancelled:
            await self._runs.finish(run_id, "cancelled")
            raise
        except asyncio.CancelledError:
            # The worker is stopping (or lost the lease: then the job is not ours to write).
            if not job.lease_lost:
                await asyncio.shield(self._runs.interrupt(run_id))
            raise
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            await self._runs.finish(run_id, "failed", error=error)
            return FlowOutcome(passed=False, error=error)
        await self._runs.finish(
            run_id,
            "passed" if outcome.passed else "failed",
            error=outcome.error,
            failed_role=outcome.failed_role,
        )
        return outcome

    # --- what runs -------------------------------------------------------------

    def _body(self, payload: Mapping[str, Any]) -> Body:
        command = payload.get("command")
        if isinstance(command, dict):
            return self._single(str(command["name"]), dict(command.get("args") or {}))
        flow = from_sources(dict(payload["sources"]), str(payload["main"]), dict(payload.get("env") or {}))

        async def body(executor: Executor, observer: Observer) -> FlowOutcome:
            outcome: FlowOutcome = await execute(flow, executor, observer)
            return outcome

        return body

    @staticmethod
    def _single(name: str, args: dict[str, Any]) -> Body:
        """A single command as a one-step run."""

        async def body(executor: Executor, observer: Observer) -> FlowOutcome:
            command = parse_command(name, args)
            step = StepEvent(
                seq=1,
                role=DEFAULT_ROLE,
                index=1,
                label=command_label(name, args),
                command=name,
                file="",
                line=None,
            )
            await observer.step_started(step)
            started = time.monotonic()
            try:
                data = await executor(Call(DEFAULT_ROLE, command))
            except StepError as exc:
                await observer.step_finished(
                    step, "failed", error=str(exc), data={}, duration=time.monotonic() - started
                )
                return FlowOutcome(passed=False, error=str(exc), failed_role=DEFAULT_ROLE)
            await observer.step_finished(
                step, "passed", error=None, data=data, duration=time.monotonic() - started
            )
            return FlowOutcome(passed=True)

        return body

    def _executor(self, devices: Mapping[str, str]) -> Executor:
        async def executor(call: Call) -> dict[str, Any]:
            device_id = devices.get(call.role)
            if device_id is None:
                raise StepError(f"no device plays role {call.role!r}")
            command = call.command
            try:
                result = await self._hub.command(
                    device_id,
                    command.name,
                    command.model_dump(mode="json"),
                    timeout=command.timeout + HUB_GRACE,
                )
            except HubError as exc:
                raise StepError(str(exc)) from exc
            if not result.ok:
                raise StepError(result.error or f"{command.name} failed on the device")
            data = result.data
            return data if isinstance(data, dict) else {"value": data}

        return executor

    async def _check_devices(self, devices: Mapping[str, str]) -> None:
        """Raise InvalidRun unless every device exists, is up, and its agent is connected."""
        for role, device_id in devices.items():
            who = f"device {device_id}" if len(devices) == 1 else f"device {device_id} ({role})"
            try:
                device = await self._store.get(device_id)
            except UnknownDevice:
                raise InvalidRun(f"{who} no longer exists") from None
            who = device.name if len(devices) == 1 else f"{device.name} ({role})"
            if device.state not in _USABLE:
                why = f": {device.reason}" if device.reason else ""
                raise InvalidRun(f"{who} is {device.state}, not ready{why}")
            if not self._hub.is_connected(device_id):
                try:
                    await self._hub.wait_hello(device_id, AGENT_WAIT)
                except TimeoutError:
                    raise InvalidRun(
                        f"the agent of {who} is not connected (waited {AGENT_WAIT:g}s)"
                    ) from None

    # --- cancellation ----------------------------------------------------------

    async def _execute(
        self, job: JobContext, body: Body, executor: Executor, observer: Observer
    ) -> FlowOutcome:
        """Run *body* in its own task; a cancel of the job cancels it and raises JobCancelled."""
        task = asyncio.create_task(body(executor, observer), name=f"flow-run-{job.payload['run']}")
        self._active[job.id] = (job, task)
        watch = asyncio.create_task(self._watch(job, task), name=f"flow-cancel-watch-{job.id}")
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if job.cancel_requested and (current is None or current.cancelling() == 0):
                raise JobCancelled() from None
            raise
        finally:
            self._active.pop(job.id, None)
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _watch(self, job: JobContext, task: asyncio.Task[FlowOutcome]) -> None:
        """Cancel *task* once the job's cancel flag is set (by the heartbeat or :meth:`_check_cancels`)."""
        while not task.done():
            if job.cancel_requested:
                task.cancel()
                return
            await asyncio.sleep(_CANCEL_POLL)

    def _cancel(self, job_id: int) -> None:
        entry = self._active.get(job_id)
        if entry is not None:
            entry[0].cancel_requested = True
            entry[1].cancel()

    def _listen(self) -> None:
        if not self._listening:
            self._listening = True
            self._database.on_notify(channel("job_changes"), self._on_job_changes)

    def _on_job_changes(self, _channel: str, _payload: str) -> None:
        if self._active and self._check is None:
            self._check = asyncio.create_task(self._check_cancels(), name="flow-cancel-check")

    async def _check_cancels(self) -> None:
        """One read for every running flow job: cancel those whose cancel was requested."""
        try:
            await asyncio.sleep(0.02)  # one read for a burst of notifications
            ids = list(self._active)
            if not ids:
                return
            async with self._database.session() as session:
                flagged = (
                    await session.scalars(select(Job.id).where(Job.id.in_(ids), Job.cancel_requested))
                ).all()
            for job_id in flagged:
                self._cancel(job_id)
        except CorralError as exc:
            log.warning("could not look for cancelled flow runs: %s", exc)
        finally:
            self._check = None

    async def _reap(self) -> None:
        try:
            await self._runs.reap_abandoned()
        except CorralError as exc:
            log.warning("could not end abandoned flow runs: %s", exc)

    async def stop(self) -> None:
        if self._check is not None:
            self._check.cancel()
            await asyncio.gather(self._check, return_exceptions=True)
