"""Keeps a job listing current from the backend's change notifications (no Qt, no timer).

The backend calls a jobs listener once per changed statement, so a busy
provisioning run fires many in a burst. ``JobsFeed`` turns any burst into at
most two listings: the one in flight, and one more after it if anything
changed meanwhile. There is no polling: without notifications it never asks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.ports import JobBackend
from backend.api import JobInfo

__all__ = ["DEFAULT_LIMIT", "JobsFeed"]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 500
"""Newest jobs listed at most (the backend's own default)."""


class JobsFeed:
    """Lists jobs whenever they change, one listing at a time, and hands them on.

    *on_jobs* gets every listing (newest first, filtered by ``set_state``);
    *on_error* gets the exception of a listing that failed (the next change
    tries again). Both are called on the event loop. While inactive
    (``set_active(False)``, the initial state) changes are only noted, and the
    listing happens on activation. ``start()`` needs a running loop; ``stop()``
    unsubscribes and cancels a listing in flight.
    """

    def __init__(
        self,
        backend: JobBackend,
        on_jobs: Callable[[list[JobInfo]], None],
        on_error: Callable[[BaseException], None],
        *,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._backend = backend
        self._on_jobs = on_jobs
        self._on_error = on_error
        self._limit = limit
        self._state: str | None = None
        self._active = False
        self._stale = True
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.listings = 0
        """How many listings were asked for (tests, diagnostics)."""

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def state(self) -> str | None:
        return self._state

    def is_busy(self) -> bool:
        """True while a listing is in flight."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Subscribe to job changes (and list now, if active)."""
        if self._unsubscribe is None:
            self._unsubscribe = self._backend.add_jobs_listener(self.refresh)
        self.refresh()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def set_state(self, state: str | None) -> None:
        """List only jobs in *state* (None: all); lists again if it changed."""
        state = state or None
        if state != self._state:
            self._state = state
            self.refresh()

    def set_active(self, active: bool) -> None:
        self._active = active
        if active and self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Ask for a listing: now, after the one in flight, or on activation."""
        if not self._active or self._unsubscribe is None:
            self._stale = True
            return
        if self.is_busy():
            self._dirty = True
            return
        self._task = asyncio.ensure_future(self._list_until_current())
        self._task.add_done_callback(_log_failure)

    async def _list_until_current(self) -> None:
        while True:
            self._dirty = self._stale = False
            state = self._state
            self.listings += 1
            try:
                jobs = await self._backend.jobs(state=state, limit=self._limit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._on_error(exc)
            else:
                if state == self._state:  # else a newer filter is already marked dirty
                    self._on_jobs(jobs)
            if not self._dirty:
                return
            if not self._active:
                self._stale = True
                return


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the jobs feed failed", exc_info=task.exception())
