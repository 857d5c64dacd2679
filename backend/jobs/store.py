"""Reading and steering jobs: list, retry, cancel (what the jobs panel and CLI use)."""

from __future__ import annotations

from sqlalchemy import func, select, update

from backend.db import Database
from backend.db.models import Job
from backend.jobs.exceptions import JobError, UnknownJob

__all__ = ["JOB_STATES", "JobStore"]

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class JobStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def list(self, *, state: str | None = None, limit: int = 500) -> list[Job]:
        """Newest first. Raises JobError for an unknown *state*."""
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            if state not in JOB_STATES:
                raise JobError(f"unknown job state {state!r}; valid states: {', '.join(JOB_STATES)}")
            query = query.where(Job.state == state)
        async with self._database.session() as session:
            return list((await session.scalars(query)).all())

    async def get(self, job_id: int) -> Job:
        async with self._database.session() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise UnknownJob(f"no job with id {job_id}")
        return job

    async def retry(self, job_id: int) -> Job:
        """Queue a failed or cancelled job again, with a fresh set of attempts."""
        async with self._database.session() as session, session.begin():
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise UnknownJob(f"no job with id {job_id}")
            if job.state not in ("failed", "cancelled"):
                raise JobError(f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried")
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
                raise JobError(f"job {job_id} is {job.state}; only queued or running jobs can be cancelled")
            await session.execute(update(Job).where(Job.id == job_id).values(**values, updated_at=func.now()))
        return await self.get(job_id)
