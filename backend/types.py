"""Plain data the backend hands out (snapshots, health)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["DeviceInfo", "DeviceListener", "Health", "JobInfo", "JobsListener"]


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
class Health:
    docker_ok: bool
    docker_message: str
    database_ok: bool
    database_message: str
    extra: dict[str, str] = field(default_factory=dict)


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
