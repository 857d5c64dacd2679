"""What the window needs from the backend: the part of ``backend.api.Corral`` it uses.

``Corral`` satisfies these structurally. They document the seam (what the app
calls, what it may raise) and let pure-logic tests of app code (e.g. the jobs
feed's coalescing) pass a small stand-in; the window itself is tested against a
real ``Corral``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from backend.api import DeviceInfo, DeviceListener, Health, JobInfo, JobsListener, StreamScope

__all__ = ["Backend", "DeviceBackend", "JobBackend"]


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


class Backend(DeviceBackend, JobBackend, Protocol):
    """Everything the main window uses."""
