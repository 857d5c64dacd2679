"""Flow runs as durable jobs: the ``flow_runs``/``flow_steps`` rows and the ``flow`` jobs that run them.

A request (``corral flow run`` on N devices, **Run flow…** in the window, one
``corral exec``) becomes, in one transaction, one ``flow_runs`` row per device
(one per set of role devices for a flow with roles), all sharing a *batch* id,
and one job of kind :data:`FLOW_JOB` per run. The job's payload carries
everything the host needs, so a client's file need not be readable by the host:

- ``run``: the run id;
- ``devices``: role -> device id;
- a flow: ``sources``/``main``/``env`` (rebuilt with ``backend.flows.from_sources``);
- a single command: ``command`` = ``{"name": …, "args": …}``.

Flow steps act on devices and are not idempotent, so a run never runs twice:
a flow job has one attempt, and a job that is claimed again after its host
died (or a run found without a live job) ends its run ``failed`` with
"interrupted: the host stopped during step N" (:meth:`FlowRuns.begin`,
:meth:`FlowRuns.reap_abandoned`). The handler is :mod:`backend.flows.runs_handler`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import Database
from backend.db.models import FlowRun, FlowStep, Job
from backend.flows.runs_errors import UnknownRun
from backend.flows.runs_record import storable_error
from backend.jobs.manager import JobManager
from backend.types import FlowRunInfo, FlowStepInfo

__all__ = [
    "FINISHED_STATES",
    "FLOW_JOB",
    "Begin",
    "FlowRuns",
    "RunRequest",
    "new_batch",
    "run_info",
    "step_info",
]

FLOW_JOB = "flow"
"""The job kind that runs one flow run (or one single command)."""
FINISHED_STATES = ("passed", "failed", "cancelled")
OPEN_STATES = ("queued", "running")
_JOB_ENDED = ("succeeded", "failed", "cancelled")

Begin = Literal["start", "interrupted", "ended"]
"""What :meth:`FlowRuns.begin` found: a run to start, one a dead host left half done, one already over."""


def new_batch() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run to start: what its row says and what its job carries."""

    name: str
    file: str
    devices: Mapping[str, str]
    """Role -> device id."""
    steps_total: int
    payload: Mapping[str, Any]
    """The job's payload besides ``run`` and ``devices`` (a flow's sources, or a command)."""


def run_info(run: FlowRun) -> FlowRunInfo:
    return FlowRunInfo(
        id=run.id,
        batch=run.batch,
        name=run.name,
        file=run.file,
        devices={str(role): str(device) for role, device in (run.devices or {}).items()},
        state=run.state,
        error=run.error,
        failed_role=run.failed_role,
        steps_total=run.steps_total,
        steps_done=run.steps_done,
        current_step=run.current_step,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        job_id=run.job_id,
    )


def step_info(step: FlowStep, data_dir: Path) -> FlowStepInfo:
    return FlowStepInfo(
        run_id=step.run_id,
        seq=step.seq,
        role=step.role,
        device_id=step.device_id,
        index=step.index,
        label=step.label,
        command=step.command,
        file=step.file,
        line=step.line,
        state=step.state,
        error=step.error,
        started_at=step.started_at,
        duration=None if step.duration_ms is None else step.duration_ms / 1000.0,
        screenshot=str(data_dir / step.screenshot) if step.screenshot else None,
        data=dict(step.data or {}),
    )


class FlowRuns:
    """The rows of flow runs and their steps. Every method opens its own transaction.

    Database errors leave as :class:`~backend.db.exceptions.DatabaseError` (see
    :meth:`Database.session`); an unknown run id as :class:`UnknownRun`.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    async def start(self, requests: Sequence[RunRequest], batch: str) -> list[FlowRun]:
        """Insert one run row and one ``flow`` job per request, all or none."""
        async with self._database.session() as session, session.begin():
            runs = []
            for request in requests:
                devices = dict(request.devices)
                run = FlowRun(
                    batch=batch,
                    name=request.name,
                    file=request.file,
                    devices=devices,
                    device_id=next(iter(devices.values()), None),
                    steps_total=request.steps_total,
                )
                session.add(run)
                await session.flush()
                job = JobManager.enqueue(
                    session,
                    FLOW_JOB,
                    device_id=run.device_id,
                    payload={**request.payload, "run": run.id, "devices": devices},
                    # Steps are not idempotent: a run is never run again (see the module docstring).
                    max_attempts=1,
                )
                await session.flush()
                run.job_id = job.id
                runs.append(run)
        return runs

    async def get(self, run_id: int) -> FlowRun:
        async with self._database.session() as session:
            run = await session.get(FlowRun, run_id)
        if run is None:
            raise UnknownRun(f"no flow run with id {run_id}")
        return run

    async def many(self, run_ids: Sequence[int]) -> list[FlowRun]:
        """The runs of *run_ids* that exist, in id order."""
        async with self._database.session() as session:
            rows = await session.scalars(select(FlowRun).where(FlowRun.id.in_(list(run_ids))))
            return sorted(rows.all(), key=lambda run: run.id)

    async def recent(self, *, batch: str | None = None, limit: int = 200) -> list[FlowRun]:
        """Newest first; *batch* keeps one request's runs."""
        query = select(FlowRun).order_by(FlowRun.id.desc()).limit(limit)
        if batch is not None:
            query = query.where(FlowRun.batch == batch)
        async with self._database.session() as session:
            return list((await session.scalars(query)).all())

    async def steps(self, run_id: int) -> list[FlowStep]:
        """The run's steps in the order they started. Raises UnknownRun."""
        async with self._database.session() as session:
            if await session.get(FlowRun, run_id) is None:
                raise UnknownRun(f"no flow run with id {run_id}")
            rows = await session.scalars(
                select(FlowStep).where(FlowStep.run_id == run_id).order_by(FlowStep.seq)
            )
            return list(rows.all())

    async def cancel(self, run_id: int) -> FlowRun:
        """Cancel a run: a queued one (and its job) at once, a running one once its handler sees the cancel.

        A run that has ended is returned unchanged.
        """
        async with self._database.session() as session, session.begin():
            run = await session.get(FlowRun, run_id, with_for_update=True)
            if run is None:
                raise UnknownRun(f"no flow run with id {run_id}")
            if run.state in FINISHED_STATES:
                return run
            job_state = await JobManager.cancel_in(session, run.job_id) if run.job_id else None
            if job_state != "running":  # else its handler ends the run once it sees the cancel
                await _end(
                    session,
                    run,
                    "cancelled",
                    "cancelled before it started" if run.state == "queued" else None,
                )
        return await self.get(run_id)

    async def begin(self, run_id: int) -> tuple[Begin, FlowRun]:
        """Called by the handler first: ``start`` moves a queued run to running.

        ``interrupted``: the run was running already, so the host that ran it
        stopped mid-run; it is now ``failed`` (see :func:`_interrupt`) and must not
        run again. ``ended``: nothing to do (the run is over).
        """
        async with self._database.session() as session, session.begin():
            run = await session.get(FlowRun, run_id, with_for_update=True)
            if run is None:
                raise UnknownRun(f"no flow run with id {run_id}")
            if run.state == "queued":
                run.state, run.started_at = "running", func.now()
                outcome: Begin = "start"
            elif run.state == "running":
                await _interrupt(session, run)
                outcome = "interrupted"
            else:
                outcome = "ended"
        return outcome, await self.get(run_id)

    async def interrupt(self, run_id: int) -> None:
        """End a running run as interrupted (its host is stopping mid-run)."""
        async with self._database.session() as session, session.begin():
            run = await session.get(FlowRun, run_id, with_for_update=True)
            if run is not None and run.state in OPEN_STATES:
                await _interrupt(session, run)

    async def finish(
        self, run_id: int, state: str, *, error: str | None = None, failed_role: str | None = None
    ) -> FlowRun:
        """End a run in *state*; steps still ``running`` fail with *error* (or "cancelled")."""
        async with self._database.session() as session, session.begin():
            run = await session.get(FlowRun, run_id, with_for_update=True)
            if run is None:
                raise UnknownRun(f"no flow run with id {run_id}")
            if run.state not in FINISHED_STATES:
                if state == "passed":
                    run.steps_done = run.steps_total
                run.failed_role = failed_role
                # The error may carry a device's text (its step's error, a label made of its values).
                await _end(session, run, state, storable_error(error))
        return await self.get(run_id)

    async def reap_abandoned(self) -> list[int]:
        """End open runs whose job is gone or over (its host died between the two): returns their ids.

        A run whose job was cancelled ends ``cancelled``; any other ``failed``,
        interrupted. Called when a host starts and after every flow job.
        """
        async with self._database.session() as session, session.begin():
            rows = await session.scalars(
                select(FlowRun)
                .outerjoin(Job, Job.id == FlowRun.job_id)
                .where(FlowRun.state.in_(OPEN_STATES), (Job.id.is_(None)) | (Job.state.in_(_JOB_ENDED)))
                .with_for_update(of=FlowRun, skip_locked=True)
            )
            runs = list(rows.all())
            for run in runs:
                job = await session.get(Job, run.job_id) if run.job_id else None
                if job is not None and job.state == "cancelled":
                    await _end(session, run, "cancelled", None)
                else:
                    await _interrupt(session, run)
        return [run.id for run in runs]


async def _interrupted_steps(session: AsyncSession, run_id: int) -> list[FlowStep]:
    """The steps the host was on: still ``running`` (it was killed), or failed ``cancelled`` (it stopped)."""
    rows = await session.scalars(
        select(FlowStep)
        .where(
            FlowStep.run_id == run_id,
            (FlowStep.state == "running")
            | ((FlowStep.state == "failed") & FlowStep.error.startswith("cancelled")),
        )
        .order_by(FlowStep.seq)
    )
    return list(rows.all())


async def _interrupt(session: AsyncSession, run: FlowRun) -> None:
    """Fail *run* (locked) as interrupted, naming the step its host was on; never runs a step again.

    A killed host left that step ``running``; a host that stopped cancelled it,
    and the interpreter recorded it failed "cancelled". Either way the step's
    error becomes the run's: the host stopped, nobody cancelled the run.
    """
    steps = await _interrupted_steps(session, run.id)
    if steps:
        where = f"step {steps[0].index} ({steps[0].label})"
    elif run.state == "queued":
        where = "start"
    else:
        where = f"step {min(run.steps_done + 1, max(run.steps_total, 1))}"
    error = f"interrupted: the host stopped during {where}"
    await _end(session, run, "failed", error)
    if steps:
        run.failed_role = steps[0].role
        await session.execute(
            update(FlowStep)
            .where(FlowStep.id.in_([step.id for step in steps if step.state == "failed"]))
            .values(error=error)
        )


async def _end(session: AsyncSession, run: FlowRun, state: str, error: str | None) -> None:
    """Move *run* (locked) to a finished *state*; its running steps fail with *error*."""
    run.state, run.error, run.finished_at = state, error, func.now()
    await session.execute(
        update(FlowStep)
        .where(FlowStep.run_id == run.id, FlowStep.state == "running")
        .values(
            state="failed",
            error=error or state,
            finished_at=func.now(),
            duration_ms=func.extract("epoch", func.now() - FlowStep.started_at) * 1000.0,
        )
    )
