"""What the window needs from the backend: the part of ``backend.api.Corral`` it uses.

``Corral`` satisfies these structurally. They document the seam (what the app
calls, what it may raise) and let pure-logic tests of app code (e.g. the jobs
feed's coalescing) pass a small stand-in; the window itself is tested against a
real ``Corral``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from backend.api import (
    DeviceInfo,
    DeviceListener,
    Flow,
    FlowRunInfo,
    FlowRunsListener,
    FlowStepInfo,
    Health,
    JobInfo,
    JobsListener,
    StreamScope,
)

__all__ = ["Backend", "DeviceBackend", "FlowBackend", "FlowLoader", "JobBackend"]

FlowLoader = Callable[[Path, Mapping[str, str]], Flow]
"""Reads and checks a flow file (blocking: call it in a thread); raises FlowError with every problem."""


class DeviceBackend(Protocol):
    async def provision(self, kind: str, count: int) -> list[DeviceInfo]:
        """Queue devices; returns them in ``requested``. Raises CorralError on bad input."""
        ...

    async def remove(self, device_ids: list[str]) -> None: ...

    async def devices(self, include_removed: bool = False) -> list[DeviceInfo]: ...

    def add_listener(self, listener: DeviceListener) -> Callable[[], None]:
        """*listener* runs on the event loop for every device change; returns unsubscribe."""
        ...

    def pane_url(self, device_id: str, scope: StreamScope = "view") -> str:
        """A fresh, single-use stream URL: ask again for every (re)connect.

        ``view`` panes' input is dropped by the stream proxy; ask for
        ``control`` only while the operator controls the device.
        """
        ...

    async def health(self) -> Health: ...


class JobBackend(Protocol):
    async def jobs(self, state: str | None = None, limit: int = 500) -> list[JobInfo]:
        """Newest first; raises CorralError (JobError) for an unknown *state*."""
        ...

    async def retry_job(self, job_id: int) -> JobInfo:
        """Queue a failed or cancelled job again; raises CorralError otherwise."""
        ...

    async def cancel_job(self, job_id: int) -> JobInfo:
        """Cancel a queued job, or ask a running one to stop; raises CorralError otherwise."""
        ...

    def add_jobs_listener(self, listener: JobsListener) -> Callable[[], None]:
        """*listener()* runs on the event loop after every change to jobs; returns unsubscribe."""
        ...


class FlowBackend(Protocol):
    async def run_flow(
        self, flow: Flow, *, devices: Sequence[str] = (), roles: Mapping[str, str] | None = None
    ) -> list[FlowRunInfo]:
        """Queue *flow*: one run per device in *devices*, or one run with *roles* (role -> device id)."""
        ...

    async def flow_runs(self, *, batch: str | None = None, limit: int = 200) -> list[FlowRunInfo]:
        """Newest first."""
        ...

    async def flow_steps(self, run_id: int) -> list[FlowStepInfo]:
        """The run's steps in the order they started."""
        ...

    async def cancel_flow_run(self, run_id: int) -> FlowRunInfo:
        """Cancel a queued or running run; raises CorralError for one that has ended."""
        ...

    def add_flow_runs_listener(self, listener: FlowRunsListener) -> Callable[[], None]:
        """*listener(run)* runs on the event loop after every change to a run or its steps."""
        ...


class Backend(DeviceBackend, JobBackend, FlowBackend, Protocol):
    """Everything the main window uses."""
