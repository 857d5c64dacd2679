"""A job store in memory, for unit tests of the worker's logic (no Postgres).

It follows the SQL of ``sql/queries.sql`` statement by statement (see
:class:`~backend.jobs.store.JobStore` for the contract), and adds what a test
needs to play the other side: :meth:`InMemoryJobStore.enqueue`,
:meth:`~InMemoryJobStore.request_cancel`, :meth:`~InMemoryJobStore.take_over`
(another worker holds the job now) and :attr:`~InMemoryJobStore.unavailable`
(every call raises StoreUnavailable, as when Postgres is down). Times are
``time.monotonic()`` seconds. Not safe across threads; one event loop only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.jobs.exceptions import StoreUnavailable, UnknownJob
from backend.jobs.store import ClaimedJob, TerminalState, Wake

__all__ = ["InMemoryJobStore", "MemoryJob"]


@dataclass
class MemoryJob:
    """One row of the ``jobs`` table, as the worker sees it."""

    id: int
    kind: str
    device_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    state: str = "queued"
    attempts: int = 0
    max_attempts: int = 3
    run_after: float = 0.0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    progress: float = 0.0
    progress_message: str = ""
    error: str | None = None
    cancel_requested: bool = False


class InMemoryJobStore:
    """:class:`~backend.jobs.store.JobStore` over a dict of :class:`MemoryJob`."""

    def __init__(self) -> None:
        self.jobs: dict[int, MemoryJob] = {}
        self.unavailable = False
        """Set to make every call raise StoreUnavailable."""
        self.closed = False
        self._ids = itertools.count(1)
        self._wake: Wake | None = None

    # --- the other side, for tests -------------------------------------------

    def enqueue(
        self,
        kind: str,
        *,
        device_id: str | None = None,
        payload: dict[str, Any] | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        delay: float = 0.0,
    ) -> int:
        """Insert a queued job (runnable after *delay* seconds) and wake the worker."""
        job = MemoryJob(
            id=next(self._ids),
            kind=kind,
            device_id=device_id,
            payload=dict(payload or {}),
            priority=priority,
            max_attempts=max_attempts,
            run_after=time.monotonic() + delay,
        )
        self.jobs[job.id] = job
        self._notify()
        return job.id

    def request_cancel(self, job_id: int) -> None:
        """Cancel a queued job at once; flag a running one (as the jobs panel does)."""
        job = self._job(job_id)
        if job.state == "queued":
            job.state = "cancelled"
        elif job.state == "running":
            job.cancel_requested = True

    def take_over(self, job_id: int, worker: str) -> None:
        """Hand the job's lease to *worker*, as when it expired and another worker claimed it."""
        job = self._job(job_id)
        job.state, job.lease_owner, job.attempts = "running", worker, job.attempts + 1

    # --- JobStore ------------------------------------------------------------

    async def open(self, connections: int, wake: Wake) -> None:
        self._check()
        self._wake = wake

    async def close(self) -> None:
        self.closed = True

    async def claim(
        self, worker: str, limit: int, lease: float, kinds: Sequence[str] | None = None
    ) -> list[ClaimedJob]:
        self._check()
        now = time.monotonic()
        ready = sorted(
            (
                job
                for job in self.jobs.values()
                if job.state == "queued" and job.run_after <= now and (kinds is None or job.kind in kinds)
            ),
            key=lambda job: (-job.priority, job.run_after, job.id),
        )[:limit]
        for job in ready:
            job.state, job.attempts = "running", job.attempts + 1
            job.lease_owner, job.lease_expires_at = worker, now + lease
        return [
            ClaimedJob(job.id, job.kind, job.device_id, dict(job.payload), job.attempts, job.max_attempts)
            for job in ready
        ]

    async def heartbeat(self, worker: str, job_ids: Sequence[int], lease: float) -> dict[int, bool]:
        self._check()
        held = {}
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is not None and self._holds(job, worker):
                job.lease_expires_at = time.monotonic() + lease
                held[job_id] = job.cancel_requested
        return held

    async def set_progress(self, job_id: int, worker: str, fraction: float, message: str) -> bool | None:
        self._check()
        job = self.jobs.get(job_id)
        if job is None or not self._holds(job, worker):
            return None
        job.progress, job.progress_message = fraction, message
        return job.cancel_requested

    async def finish(self, job_id: int, worker: str, state: TerminalState, error: str | None) -> None:
        self._check()
        job = self.jobs.get(job_id)
        if job is not None and job.lease_owner == worker:
            job.state, job.error = state, error
            job.lease_owner = job.lease_expires_at = None
            if state == "succeeded":
                job.progress = 1.0

    async def finish_succeeded(self, job_ids: Sequence[int], worker: str) -> None:
        self._check()
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is not None and job.lease_owner == worker:
                job.state, job.progress, job.progress_message = "succeeded", 1.0, "done"
                job.lease_owner = job.lease_expires_at = None

    async def retry(self, job_id: int, worker: str, delay: float, error: str | None) -> None:
        self._check()
        job = self.jobs.get(job_id)
        if job is not None and job.lease_owner == worker:
            job.state, job.error, job.run_after = "queued", error, time.monotonic() + delay
            job.lease_owner = job.lease_expires_at = None
            self._notify()

    async def release(self, worker: str, job_ids: Sequence[int] | None = None) -> list[int]:
        self._check()
        candidates = self.jobs.values() if job_ids is None else (self.jobs.get(i) for i in job_ids)
        released = []
        for job in candidates:
            if job is not None and self._holds(job, worker):
                job.state, job.attempts = "queued", max(job.attempts - 1, 0)
                job.lease_owner = job.lease_expires_at = None
                released.append(job.id)
        if released:
            self._notify()
        return released

    async def requeue_expired(self) -> list[int]:
        self._check()
        now = time.monotonic()
        requeued = []
        for job in self.jobs.values():
            if job.state == "running" and job.lease_expires_at is not None and job.lease_expires_at < now:
                job.state, job.lease_owner, job.lease_expires_at = "queued", None, None
                job.error = (job.error + "\n" if job.error else "") + "worker lost its lease; requeued"
                requeued.append(job.id)
        if requeued:
            self._notify()
        return requeued

    async def next_run_after(self) -> float | None:
        self._check()
        due = [job.run_after for job in self.jobs.values() if job.state == "queued"]
        return min(due) - time.monotonic() if due else None

    # --- internals -----------------------------------------------------------

    def _job(self, job_id: int) -> MemoryJob:
        if job_id not in self.jobs:
            raise UnknownJob(f"no job with id {job_id}")
        return self.jobs[job_id]

    @staticmethod
    def _holds(job: MemoryJob, worker: str) -> bool:
        return job.state == "running" and job.lease_owner == worker

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("in-memory job store set unavailable")

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake()
