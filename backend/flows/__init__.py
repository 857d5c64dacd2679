"""Flows: Maestro-format YAML files, checked before they run and run step by step.

Contract between the flow language (this package's parser and interpreter) and
whoever runs flows on devices (``backend.flows.runs``: jobs, rows, the hub):

- :func:`load` / :func:`parse` read and validate a flow; every problem found is
  reported at once in :class:`FlowError` (file, line, command, message).
- :func:`execute` interprets a loaded flow. It never talks to a device itself:
  it calls the *executor* for each agent command (:class:`Call`) on a role's
  device and reports each step to the *observer*. Roles run concurrently, each
  in its own lane; a step that reads another role's value waits for it.

Modules: ``yamlsafe`` (safe YAML with lines), ``syntax`` (Maestro's commands as
models), ``variables`` (``${…}``), ``mapping`` (flow commands -> agent
commands, labels), ``compiler`` (checks, builds the program), ``interpreter``
(lanes, steps), ``loading`` (load/parse/from_sources), ``schema`` (JSON Schema).
"""

from backend.flows.interpreter import execute
from backend.flows.loading import from_sources, load, parse
from backend.flows.model import (
    DEFAULT_ROLE,
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
from backend.flows.program import Program

__all__ = [
    "DEFAULT_ROLE",
    "Call",
    "Executor",
    "Flow",
    "FlowError",
    "FlowOutcome",
    "FlowProblem",
    "Observer",
    "StepEvent",
    "StepOutcome",
    "execute",
    "from_sources",
    "load",
    "parse",
    "steps_of",
]


def steps_of(flow: Flow, role: str) -> int:
    """How many top-level steps *role* runs (its "m" of "n/m"); 0 for a role the flow lacks."""
    program = flow.program
    return len(program.lanes.get(role, ())) if isinstance(program, Program) else 0
