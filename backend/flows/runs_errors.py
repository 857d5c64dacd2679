"""Errors of flow runs and single commands (``backend.flows.runs*``).

RunError              (a CorralError)
├── UnknownRun        no flow run with that id
├── InvalidRun        a run request that cannot start (unknown device, wrong kind, roles missing)
├── RunFailed         a run ended failed; the message is its error (the failing step's);
│                     also a JobFailed, so the job worker logs it as an outcome
└── CommandFailed     a single command (``corral exec``) failed; the message says why

The flow language's own errors (a file that does not parse) are
:class:`backend.flows.FlowError`.
"""

from __future__ import annotations

from backend.exceptions import CorralError
from backend.jobs.exceptions import JobFailed

__all__ = ["CommandFailed", "InvalidRun", "RunError", "RunFailed", "UnknownRun"]


class RunError(CorralError):
    """Flow run error."""


class UnknownRun(RunError):
    """No such flow run."""


class InvalidRun(RunError):
    """That flow run cannot start."""


class RunFailed(RunError, JobFailed):
    """The flow run failed."""


class CommandFailed(RunError):
    """The command failed on the device."""
