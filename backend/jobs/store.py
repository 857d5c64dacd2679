"""The worker's one door to job rows: a small interface, two implementations.

:class:`JobStore` is everything a :class:`~backend.jobs.worker.Worker` reads or
writes while it runs jobs: claim, heartbeat, progress, finish, retry, release,
requeue expired leases, and a wake-up when new work arrives. The Postgres
implementation (:mod:`backend.jobs.postgres`) runs the named SQL of
``sql/queries.sql``; the in-memory one (:mod:`backend.jobs.memory`) lets unit
tests drive the worker's logic without a database.

Contract shared by both:

- Every write that names a *worker* applies only to rows that worker still
  leases (``state = 'running' AND lease_owner = worker``); a row it lost is left
  alone, silently.
- A store that cannot reach its backend raises
  :class:`~backend.jobs.exceptions.StoreUnavailable` and nothing else; the
  worker decides whether to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["JOB_STATES", "ClaimedJob", "JobStore", "TerminalState", "Wake"]

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")

TerminalState = Literal["succeeded", "failed", "cancelled"]

Wake = Callable[[], None]
"""Called on the loop when a job may have become runnable (new or retried work)."""


@dataclass(slots=True)
class ClaimedJob:
    """A job the store leased to a worker; *attempt* already counts this run. Read-only by convention."""

    id: int
    kind: str
    device_id: str | None
    payload: dict[str, Any]
    attempt: int
    max_attempts: int


class JobStore(Protocol):
    async def open(self, connections: int, wake: Wake) -> None:
        """Get ready for up to *connections* concurrent calls; call *wake* on new work."""

    async def close(self) -> None:
        """Release what :meth:`open` took. The store is not used afterwards."""

    async def claim(
        self, worker: str, limit: int, lease: float, kinds: Sequence[str] | None = None
    ) -> list[ClaimedJob]:
        """Lease up to *limit* runnable jobs (of *kinds*, or any) to *worker* for *lease* seconds.

        Highest priority first, then oldest ``run_after``, then id. Each claimed
        job's attempt count goes up by one.
        """

    async def heartbeat(self, worker: str, job_ids: Sequence[int], lease: float) -> dict[int, bool]:
        """Extend *worker*'s leases on *job_ids*; returns {id: cancel requested} of those still held."""

    async def set_progress(self, job_id: int, worker: str, fraction: float, message: str) -> bool | None:
        """Record progress; returns the cancel flag, or None when *worker* no longer holds the job."""

    async def finish(self, job_id: int, worker: str, state: TerminalState, error: str | None) -> None:
        """Move the job to a terminal *state* with *error*, ending the lease."""

    async def finish_succeeded(self, job_ids: Sequence[int], worker: str) -> None:
        """Mark *job_ids* succeeded in one write (successes are batched)."""

    async def retry(self, job_id: int, worker: str, delay: float, error: str | None) -> None:
        """Queue the job again, runnable after *delay* seconds; the attempt stays counted."""

    async def release(self, worker: str, job_ids: Sequence[int] | None = None) -> list[int]:
        """Queue *worker*'s jobs again at once with the attempt undone (shutdown).

        With *job_ids* None, every job *worker* still leases. Returns the ids released.
        """

    async def requeue_expired(self) -> list[int]:
        """Queue again every running job whose lease ran out (its worker died)."""

    async def next_run_after(self) -> float | None:
        """Seconds until the earliest queued job is runnable (<= 0: now); None if none is queued."""
