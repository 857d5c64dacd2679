"""What a job handler sees of its job: its data, progress and checkpoints.

A handler gets a :class:`JobContext` and nothing else of the engine: no pool, no
session, no store. It calls :meth:`JobContext.progress` at its checkpoints (which
also notices a cancel or a lost lease) and :meth:`JobContext.checkpoint` where it
loops without writing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from backend.jobs.exceptions import JobCancelled, LeaseLost, StoreUnavailable
from backend.jobs.store import ClaimedJob

__all__ = ["Handler", "JobContext", "ProgressWriter"]

log = logging.getLogger(__name__)

Handler = Callable[["JobContext"], Awaitable[None]]
"""Runs one job. Must be idempotent: a job may run again after a crash or a lost lease."""

ProgressWriter = Callable[[int, float, str], Awaitable["bool | None"]]
"""(job id, fraction, message) -> cancel flag, or None when the lease is lost."""


class JobContext:
    """One run of one job, handed to its handler.

    Ending a handler: return (succeeded), raise (retried with backoff until the
    last attempt, then failed), or let :class:`JobCancelled` out of
    :meth:`progress`/:meth:`checkpoint` (cancelled). When the worker loses the
    job's lease (another worker holds it now) it cancels the handler's task: the
    handler sees ``asyncio.CancelledError`` at its current ``await`` and must not
    clean up, since the job is not its own any more.
    """

    __slots__ = ("_lost", "_on_lost", "_write", "cancel_requested", "job", "lease_lost")

    def __init__(self, job: ClaimedJob, write: ProgressWriter, on_lost: Callable[[int], None]) -> None:
        self.job = job
        self.cancel_requested = False
        """Set by a progress write or the heartbeat when someone asked to cancel the job."""
        self.lease_lost = False
        """Set when the worker found that it no longer holds the job."""
        self._write = write
        self._on_lost = on_lost

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def device_id(self) -> str | None:
        return self.job.device_id

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def attempt(self) -> int:
        """This run's number, from 1."""
        return self.job.attempt

    @property
    def max_attempts(self) -> int:
        return self.job.max_attempts

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def __repr__(self) -> str:
        return f"<JobContext {self.id} {self.kind} attempt {self.attempt}/{self.max_attempts}>"

    async def progress(self, fraction: float, message: str) -> None:
        """Record progress (clamped to 0..1), then :meth:`checkpoint`.

        Best effort: when the store is unreachable the job carries on. May be
        called from helper tasks of the handler as well as from the handler.
        Raises JobCancelled when the job was cancelled. When the lease turns out
        to be lost, the handler's task is cancelled (see the class docstring).
        """
        try:
            cancelled = await self._write(self.id, max(0.0, min(1.0, fraction)), message)
        except StoreUnavailable as exc:
            log.warning("job %s: could not record progress: %s", self.id, exc)
            cancelled = False
        if cancelled is None:
            self.lose_lease()
            # In the handler's own task this delivers the cancellation right here,
            # before the handler acts on a job that is not its own any more.
            await asyncio.sleep(0)
        self.checkpoint(bool(cancelled))

    def checkpoint(self, cancelled: bool = False) -> None:
        """Raise LeaseLost or JobCancelled if the lease was lost or a cancel was seen."""
        self.cancel_requested = self.cancel_requested or cancelled
        if self.lease_lost:
            raise LeaseLost(f"job {self.id}: another worker holds it now")
        if self.cancel_requested:
            raise JobCancelled()

    def lose_lease(self) -> None:
        """Mark the lease lost and have the worker stop the handler (idempotent; worker use)."""
        if not self.lease_lost:
            self.lease_lost = True
            self._on_lost(self.id)
