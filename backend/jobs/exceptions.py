"""Errors of the job engine.

JobError
├── JobCancelled       the job's cancel flag was seen at a checkpoint
├── JobFailed          the work ended failed, as its handler reports (a flow run's step failed)
├── LeaseLost          another worker owns the job now; stop without writing
├── StoreUnavailable   the job store (Postgres) could not be reached; retry later
├── UnknownJob         no job with that id
└── UnknownJobKind     no handler is registered for a job's kind
"""

from __future__ import annotations

from backend.exceptions import CorralError

__all__ = [
    "JobCancelled",
    "JobError",
    "JobFailed",
    "LeaseLost",
    "StoreUnavailable",
    "UnknownJob",
    "UnknownJobKind",
]


class JobError(CorralError):
    """Job engine error."""


class JobCancelled(JobError):
    """The job was cancelled."""


class JobFailed(JobError):
    """The job's work ended failed; the message says why.

    An outcome its caller reports (a failed flow run), not a fault of Corral:
    the worker records it like any failure but logs it at INFO, not WARNING.
    """


class LeaseLost(JobError):
    """The worker lost its lease on the job; another worker runs it now."""


class StoreUnavailable(JobError):
    """The job store could not be reached; the worker retries on its own."""


class UnknownJob(JobError):
    """No such job."""


class UnknownJobKind(JobError):
    """No handler for this kind of job."""
