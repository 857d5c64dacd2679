"""Plain data the backend hands out (snapshots, health)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "FLOW_RUN_STATES",
    "FLOW_STEP_STATES",
    "DeviceInfo",
    "DeviceListener",
    "FlowRunInfo",
    "FlowRunsListener",
    "FlowStepInfo",
    "Health",
    "JobInfo",
    "JobsListener",
    "TaskState",
    "TaskStatus",
]

TaskStatus = Literal["running", "failing", "finished", "stopped"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    name: str
    kind: str
    state: str
    reason: str | None
    created_at: datetime
    updated_at: datetime
    progress: float = 0.0
    """0..1 while provisioning; 1 once ready."""
    progress_message: str = ""


@dataclass(frozen=True, slots=True)
class TaskState:
    """A snapshot of one supervised background task (see backend.supervisor)."""

    name: str
    status: TaskStatus
    """``running``; ``failing`` while waiting to retry after a failure; ``finished``
    when the coroutine returned; ``stopped`` once stopped."""
    failures: int = 0
    """Failures since the task was started."""
    last_error: str | None = None
    """``Type: message`` of the latest failure (kept after it recovers)."""
    last_error_at: datetime | None = None
    last_ok_at: datetime | None = None
    """When a periodic pass last succeeded (or a one-shot task returned)."""

    def describe(self) -> str:
        """One line for a status bar tooltip or ``corral doctor``."""
        text = f"{self.name}: {self.status}"
        if self.failures:
            at = self.last_error_at.astimezone().strftime("%H:%M:%S") if self.last_error_at else "?"
            plural = "s" if self.failures != 1 else ""
            text += f" ({self.failures} failure{plural}, last at {at}: {self.last_error})"
        return text


@dataclass(frozen=True, slots=True)
class Health:
    docker_ok: bool
    docker_message: str
    database_ok: bool
    database_message: str
    extra: dict[str, str] = field(default_factory=dict)
    role: str = "client"
    """``host``; ``client``; or ``standby``: a host that lost the lock and is taking it back."""
    host: str = ""
    """Who the host is, in words ("this process", "laptop:4242 (since …)", "none running")."""
    tasks: tuple[TaskState, ...] = ()
    """This process's supervised background tasks."""

    @property
    def background_ok(self) -> bool:
        """False while any background task is failing (waiting to retry)."""
        return all(task.status != "failing" for task in self.tasks)

    @property
    def background_message(self) -> str:
        troubled = [task.describe() for task in self.tasks if task.failures or task.status == "failing"]
        running = sum(task.status == "running" for task in self.tasks)
        return "; ".join(troubled) or f"{running} background task{'s' if running != 1 else ''} running"


DeviceListener = Callable[[DeviceInfo], None]
"""Called on the event loop with the new snapshot of a device whenever it changes."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: int
    kind: str
    device_id: str | None
    state: str
    """queued, running, succeeded, failed or cancelled."""
    attempts: int
    max_attempts: int
    progress: float
    progress_message: str
    error: str | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime


JobsListener = Callable[[], None]
"""Called on the event loop whenever something in the jobs table changed."""


FLOW_RUN_STATES = ("queued", "running", "passed", "failed", "cancelled")
"""A run ends ``passed``, ``failed`` or ``cancelled``."""
FLOW_STEP_STATES = ("running", "passed", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class FlowStepInfo:
    run_id: int
    seq: int
    role: str
    device_id: str | None
    index: int
    """The role's top-level step number (the "n" of "n/m")."""
    label: str
    command: str
    file: str
    line: int | None
    state: str
    error: str | None
    started_at: datetime
    duration: float | None
    """Seconds, once finished."""
    screenshot: str | None = None
    """Absolute path of the step's screenshot, if it took one."""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FlowRunInfo:
    id: int
    batch: str
    name: str
    file: str
    devices: dict[str, str]
    """Role -> device id (one role, ``device``, for flows without roles)."""
    state: str
    error: str | None
    failed_role: str | None
    steps_total: int
    steps_done: int
    current_step: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    job_id: int | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("passed", "failed", "cancelled")


FlowRunsListener = Callable[[FlowRunInfo], None]
"""Called on the loop with a run's new snapshot whenever it or one of its steps changed."""
