"""Keeps the app's view of flow runs current from the backend's run notifications (no Qt).

Every change to a run or its steps reaches the runs listener as the run's new
snapshot. ``FlowRunsFeed`` hands each snapshot on at once (the runs table and
the pane overlays need nothing more), lists the newest runs on start, and
keeps the steps of one watched run (the one selected in the panel) current:
any burst of changes to it becomes at most two step listings, the one in
flight and one after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.ports import FlowBackend
from backend.api import FlowRunInfo, FlowStepInfo

__all__ = ["DEFAULT_LIMIT", "FlowRunsFeed"]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 200
"""Newest runs listed on start (the backend's own default)."""


class FlowRunsFeed:
    """Feeds *on_runs* (a listing, newest first), *on_run* (one changed run) and *on_steps*.

    *on_steps(run_id, steps)* gets the watched run's steps; *on_error(exc)*
    gets the exception of a listing that failed (the next change tries
    again). All are called on the event loop. ``start()`` needs a running
    loop; ``stop()`` unsubscribes and cancels what is in flight.
    """

    def __init__(
        self,
        backend: FlowBackend,
        on_runs: Callable[[list[FlowRunInfo]], None],
        on_run: Callable[[FlowRunInfo], None],
        on_steps: Callable[[int, list[FlowStepInfo]], None],
        on_error: Callable[[BaseException], None],
        *,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._backend = backend
        self._on_runs = on_runs
        self._on_run = on_run
        self._on_steps = on_steps
        self._on_error = on_error
        self._limit = limit
        self._unsubscribe: Callable[[], None] | None = None
        self._listing: asyncio.Task[None] | None = None
        self._steps_task: asyncio.Task[None] | None = None
        self._watched: int | None = None
        self._dirty = False
        self.step_listings = 0
        """How many step listings were asked for (tests, diagnostics)."""

    @property
    def watched(self) -> int | None:
        return self._watched

    def start(self) -> None:
        """Subscribe to run changes and list the newest runs once."""
        if self._unsubscribe is not None:
            return
        self._unsubscribe = self._backend.add_flow_runs_listener(self._on_change)
        self._listing = asyncio.ensure_future(self._list_runs())
        self._listing.add_done_callback(_log_failure)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in (self._listing, self._steps_task):
            if task is not None:
                task.cancel()
        self._listing = self._steps_task = None

    def watch(self, run_id: int | None) -> None:
        """Keep the steps of *run_id* current (None: of no run); lists them now."""
        if run_id == self._watched:
            return
        self._watched = run_id
        if self._steps_task is not None:
            self._steps_task.cancel()
            self._steps_task = None
        if run_id is not None:
            self._refresh_steps()

    def _on_change(self, run: FlowRunInfo) -> None:
        # Called by the backend on the loop.
        self._on_run(run)
        if run.id == self._watched:
            self._refresh_steps()

    def _refresh_steps(self) -> None:
        if self._steps_task is not None and not self._steps_task.done():
            self._dirty = True
            return
        self._steps_task = asyncio.ensure_future(self._list_steps_until_current())
        self._steps_task.add_done_callback(_log_failure)

    async def _list_runs(self) -> None:
        try:
            runs = await self._backend.flow_runs(limit=self._limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_error(exc)
            return
        self._on_runs(runs)

    async def _list_steps_until_current(self) -> None:
        while True:
            self._dirty = False
            run_id = self._watched
            if run_id is None:
                return
            self.step_listings += 1
            try:
                steps = await self._backend.flow_steps(run_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._on_error(exc)
            else:
                if run_id == self._watched:
                    self._on_steps(run_id, steps)
            if not self._dirty:
                return


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the flow runs feed failed", exc_info=task.exception())
