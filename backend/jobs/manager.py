"""The only door to the ``jobs`` table for everyone but the worker.

:class:`JobManager` enqueues jobs inside the caller's transaction (a device and
its provision job are inserted together or not at all), cancels a device's
jobs, and reads and steers jobs for the jobs panel and the CLI. The worker goes
through :class:`~backend.jobs.store.JobStore` instead.

Methods that take a *session* run in the caller's transaction and leave its
errors to the caller; the others open their own and raise StoreUnavailable when
the database cannot be reached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import Database
from backend.db.models import Job
from backend.jobs.exceptions import JobError, StoreUnavailable, UnknownJob
from backend.jobs.store import JOB_STATES

__all__ = ["JobManager"]

OPEN_STATES = ("queued", "running")


class JobManager:
    def __init__(self, database: Database) -> None:
        self._database = database

    # --- inside the caller's transaction ---------------------------------------

    @staticmethod
    def enqueue(
        session: AsyncSession,
        kind: str,
        *,
        device_id: str | None = None,
        payload: dict[str, Any] | None = None,
        priority: int = 0,
        max_attempts: int = 3,
    ) -> Job:
        """Queue a job in *session*'s transaction: it exists, and workers wake, only on commit.

        Higher *priority* runs first. Handlers must be idempotent (see
        :data:`~backend.jobs.context.Handler`). Returns the new row (its id is set
        once the session flushes).
        """
        job = Job(
            kind=kind,
            device_id=device_id,
            payload=dict(payload or {}),
            priority=priority,
            max_attempts=max_attempts,
        )
        session.add(job)
        return job

    @staticmethod
    async def cancel_for_devices(session: AsyncSession, device_ids: Sequence[str], kind: str) -> None:
        """Cancel *device_ids*' jobs of *kind*: queued ones now, running ones at their next checkpoint."""
        ids = list(device_ids)
        mine = (Job.device_id.in_(ids), Job.kind == kind)
        await session.execute(
            update(Job)
            .where(*mine, Job.state == "queued")
            .values(state="cancelled", finished_at=func.now(), updated_at=func.now())
        )
        await session.execute(
            update(Job)
            .where(*mine, Job.state == "running")
            .values(cancel_requested=True, updated_at=func.now())
        )

    @staticmethod
    async def cancel_in(session: AsyncSession, job_id: int) -> str | None:
        """Cancel job *job_id* in *session*'s transaction; returns its state afterwards (None: no such job).

        A queued job is ``cancelled`` at once; a running one gets its cancel flag
        (its handler stops at its next checkpoint) and stays ``running``; an
        ended one is left as it is.
        """
        job = await session.get(Job, job_id, with_for_update=True)
        if job is None:
            return None
        if job.state == "queued":
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(state="cancelled", finished_at=func.now(), updated_at=func.now())
            )
            return "cancelled"
        if job.state == "running":
            await session.execute(
                update(Job).where(Job.id == job_id).values(cancel_requested=True, updated_at=func.now())
            )
        return job.state

    @staticmethod
    async def latest_payload(session: AsyncSession, device_id: str, kind: str) -> dict[str, Any] | None:
        """The payload of *device_id*'s newest *kind* job, or None if it never had one."""
        payload: dict[str, Any] | None = await session.scalar(
            select(Job.payload)
            .where(Job.device_id == device_id, Job.kind == kind)
            .order_by(Job.id.desc())
            .limit(1)
        )
        return payload

    # --- on their own ----------------------------------------------------------

    async def open_device_ids(self) -> set[str]:
        """Ids of devices that have a queued or running job (someone is on them)."""
        with _translated():
            async with self._database.session() as session:
                rows = await session.scalars(
                    select(Job.device_id).where(Job.state.in_(OPEN_STATES), Job.device_id.is_not(None))
                )
                return {device_id for device_id in rows if device_id is not None}

    async def list(self, *, state: str | None = None, limit: int = 500) -> list[Job]:
        """Newest first. Raises JobError for an unknown *state*."""
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            if state not in JOB_STATES:
                raise JobError(f"unknown job state {state!r}; valid states: {', '.join(JOB_STATES)}")
            query = query.where(Job.state == state)
        with _translated():
            async with self._database.session() as session:
                return list((await session.scalars(query)).all())

    async def get(self, job_id: int) -> Job:
        with _translated():
            async with self._database.session() as session:
                job = await session.get(Job, job_id)
        if job is None:
            raise UnknownJob(f"no job with id {job_id}")
        return job

    async def retry(self, job_id: int) -> Job:
        """Queue a failed or cancelled job again, with a fresh set of attempts."""
        with _translated():
            async with self._database.session() as session, session.begin():
                job = await session.get(Job, job_id, with_for_update=True)
                if job is None:
                    raise UnknownJob(f"no job with id {job_id}")
                if job.state not in ("failed", "cancelled"):
                    raise JobError(
                        f"job {job_id} {_is(job.state)}; only failed or cancelled jobs can be retried"
                    )
                await session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        state="queued",
                        attempts=0,
                        run_after=func.now(),
                        cancel_requested=False,
                        progress=0.0,
                        progress_message="retry requested",
                        finished_at=None,
                        updated_at=func.now(),
                    )
                )
        return await self.get(job_id)

    async def cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once; ask a running one to stop at its next checkpoint."""
        with _translated():
            async with self._database.session() as session, session.begin():
                job = await session.get(Job, job_id, with_for_update=True)
                if job is None:
                    raise UnknownJob(f"no job with id {job_id}")
                values: dict[str, object]
                if job.state == "queued":
                    values = {"state": "cancelled", "finished_at": func.now()}
                elif job.state == "running":
                    values = {"cancel_requested": True}
                else:
                    raise JobError(
                        f"job {job_id} {_is(job.state)}; only queued or running jobs can be cancelled"
                    )
                await session.execute(
                    update(Job).where(Job.id == job_id).values(**values, updated_at=func.now())
                )
        return await self.get(job_id)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """SQLAlchemy and socket errors leave as StoreUnavailable."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable(f"the jobs table cannot be reached: {exc}") from exc


def _is(state: str) -> str:
    """'has already succeeded', 'is running': a job's state as the end of a sentence."""
    return {"succeeded": "has already succeeded", "failed": "has failed", "cancelled": "was cancelled"}.get(
        state, f"is {state}"
    )
