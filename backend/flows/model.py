"""The flow contract's types (see the package docstring). The interpreter fills them in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from agent.commands import AgentCommand
from backend.exceptions import CorralError

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
]

DEFAULT_ROLE = "device"
"""The one role of a flow that declares no ``roles``: the device it runs on."""


@dataclass(frozen=True, slots=True)
class FlowProblem:
    """One thing wrong with a flow file, found before anything runs."""

    file: str
    line: int | None
    command: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        what = f" {self.command}:" if self.command else ""
        return f"{where}:{what} {self.message}"


class FlowError(CorralError):
    """A flow that cannot run; :attr:`problems` lists every problem, in file order."""

    def __init__(self, problems: list[FlowProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True, slots=True)
class Flow:
    """A parsed, validated flow. Build it with :func:`backend.flows.load` or ``parse``."""

    name: str
    path: Path | None
    roles: Mapping[str, str]
    """Role name -> device kind. A flow without ``roles`` has one role, DEFAULT_ROLE."""
    env: Mapping[str, str]
    """Variables after defaults, the header's ``env`` and the caller's ``--env`` (which win)."""
    tags: tuple[str, ...]
    steps: int
    """How many steps a run shows as "n/m" (top-level steps of all lanes; runFlow, repeat count 1)."""
    sources: Mapping[str, str] = field(repr=False, compare=False)
    """Text of every file the flow read (itself and its ``runFlow`` files), by path as written in
    ``file`` of its steps: :func:`backend.flows.from_sources` rebuilds the same flow from it
    without touching the disk (the host runs what the client checked)."""
    main: str = ""
    """The key of the flow's own file in :attr:`sources`."""
    program: Any = field(default=None, repr=False, compare=False)
    """The interpreter's own representation; opaque to callers."""


@dataclass(frozen=True, slots=True)
class Call:
    """One agent command for one role's device."""

    role: str
    command: AgentCommand


Executor = Callable[[Call], Awaitable[dict[str, Any]]]
"""Runs *call* on the device that plays ``call.role``; returns the command's result data.

Raises an exception whose message is the step's error (timeout, agent disconnected, assertion…).
"""


@dataclass(frozen=True, slots=True)
class StepEvent:
    """A step as reported to the observer."""

    seq: int
    """Unique within the run, increasing in the order steps start (any lane)."""
    role: str
    index: int
    """Top-level step number of this role (1-based), the "n" of "n/m"."""
    label: str
    """What a person reads: ``tapOn text "Log in"``."""
    command: str
    """The flow command (Maestro's name: ``tapOn``, ``readQr``…)."""
    file: str
    line: int | None


StepOutcome = Literal["passed", "failed", "skipped"]


class Observer(Protocol):
    async def step_started(self, step: StepEvent) -> None: ...

    async def step_finished(
        self,
        step: StepEvent,
        outcome: StepOutcome,
        *,
        error: str | None,
        data: Mapping[str, Any],
        duration: float,
    ) -> None:
        """*data*: the agent's result (a screenshot's ``png``, a ``text``…), empty for a failure."""
        ...


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    passed: bool
    error: str | None = None
    """For a failure: ``<label>: <reason>`` of the step that failed."""
    failed_role: str | None = None
