"""Flows: Maestro-format YAML files, checked before they run and run step by step.

Contract between the flow language (this package's parser and interpreter) and
whoever runs flows on devices (``backend.flows.runs``: jobs, rows, the hub):

- :func:`load` / :func:`parse` read and validate a flow; every problem found is
  reported at once in :class:`FlowError` (file, line, command, message).
- :func:`execute` interprets a loaded flow. It never talks to a device itself:
  it calls the *executor* for each agent command (:class:`Call`) on a role's
  device and reports each step to the *observer*. Roles run concurrently, each
  in its own lane; a step that reads another role's value waits for it.
"""

from backend.flows.model import (
    Call,
    Executor,
    Flow,
    FlowError,
    FlowOutcome,
    FlowProblem,
    Observer,
    StepEvent,
    StepOutcome,
)

__all__ = [
    "Call",
    "Executor",
    "Flow",
    "FlowError",
    "FlowOutcome",
    "FlowProblem",
    "Observer",
    "StepEvent",
    "StepOutcome",
]
