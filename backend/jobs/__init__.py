"""Durable jobs on Postgres: claim with SKIP LOCKED, lease + heartbeat, retry with backoff.

Other packages reach the ``jobs`` table only through :class:`JobManager`
(enqueue in their own transaction, cancel, list); handlers see a
:class:`JobContext`; the :class:`Worker` does its I/O through a
:class:`~backend.jobs.store.JobStore` (Postgres, or in memory for unit tests).
"""

from backend.jobs.context import Handler, JobContext
from backend.jobs.exceptions import JobCancelled, JobError, LeaseLost, StoreUnavailable, UnknownJobKind
from backend.jobs.manager import JobManager
from backend.jobs.worker import Worker

__all__ = [
    "Handler",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobManager",
    "LeaseLost",
    "StoreUnavailable",
    "UnknownJobKind",
    "Worker",
]
