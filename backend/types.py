"""Plain data the backend hands out (snapshots, health)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = ["DeviceInfo", "DeviceListener", "Health", "JobInfo", "JobsListener", "TaskState", "TaskStatus"]

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
