"""Named, supervised background tasks: a failure is logged, shown and retried, never silent.

A :class:`Supervisor` runs each long-lived coroutine of the process under a name:

- :meth:`Supervisor.spawn` runs a coroutine until it returns. If it raises, the
  error is logged (with its traceback unless it is a CorralError, whose message
  says what is wrong), the failure recorded, and the coroutine started again
  after a backoff (0.2 s doubling to *max_backoff*; reset once a run has lasted
  30 s).
- :meth:`Supervisor.every` calls a coroutine every *interval* seconds; a pass
  that raises is logged and recorded the same way and retried after the
  backoff instead of the interval, so a failing loop neither dies nor spins.

:meth:`Supervisor.states` is what health reports show. :meth:`Supervisor.stop`
cancels one task and waits for it; :meth:`Supervisor.stop_all` cancels every
task (in reverse start order) and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from backend.exceptions import CorralError
from backend.types import TaskState

__all__ = ["Supervisor", "run_steps"]

log = logging.getLogger(__name__)

_INITIAL_BACKOFF = 0.2
_HEALTHY_RUN = 30.0
"""A run that lasted this long (seconds) resets the backoff."""


class Supervisor:
    """Owns the background tasks of one Corral; see the module docstring."""

    def __init__(self, *, max_backoff: float = 5.0) -> None:
        self._max_backoff = max_backoff
        self.on_change: Callable[[], None] | None = None
        """Called (on the loop) after any task's state changed."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._states: dict[str, TaskState] = {}

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run()`` as task *name*, restarting it after a failure (see module docstring)."""
        self._start(name, run, None)

    def every(self, name: str, interval: float, body: Callable[[], Awaitable[None]]) -> None:
        """Call ``body()`` now and then every *interval* seconds as task *name*."""
        self._start(name, body, interval)

    def states(self) -> list[TaskState]:
        """Snapshots of every task started so far, in start order."""
        return list(self._states.values())

    def state(self, name: str) -> TaskState | None:
        return self._states.get(name)

    async def stop(self, name: str) -> None:
        """Cancel task *name* and wait until it has ended. Never raises (but CancelledError)."""
        task = self._tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # never raises the task's outcome; our own cancel passes
        self._set(name, status="stopped")

    async def stop_all(self) -> None:
        """Stop every task, the most recently started first."""
        for name in reversed(list(self._tasks)):
            await self.stop(name)

    def _start(self, name: str, body: Callable[[], Awaitable[None]], interval: float | None) -> None:
        if name in self._tasks:
            raise RuntimeError(f"a supervised task named {name!r} is already running")
        self._states[name] = TaskState(name, "running")
        self._tasks[name] = asyncio.create_task(self._supervise(name, body, interval=interval), name=name)
        self._changed()

    async def _supervise(
        self, name: str, body: Callable[[], Awaitable[None]], *, interval: float | None
    ) -> None:
        backoff = _INITIAL_BACKOFF
        while True:
            started = time.monotonic()
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started >= _HEALTHY_RUN:
                    backoff = _INITIAL_BACKOFF
                if isinstance(exc, CorralError):
                    # An expected condition (Docker or Postgres away) explains itself.
                    log.warning("background task %s failed: %s; retrying in %.1fs", name, exc, backoff)
                else:
                    log.exception("background task %s failed; retrying in %.1fs", name, backoff)
                self._set(
                    name,
                    status="failing",
                    failures=self._states[name].failures + 1,
                    last_error=f"{type(exc).__name__}: {exc}",
                    last_error_at=datetime.now(UTC),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                self._set(name, status="running")
                continue
            if interval is None:
                self._set(name, status="finished", last_ok_at=datetime.now(UTC))
                self._tasks.pop(name, None)
                return
            backoff = _INITIAL_BACKOFF
            self._set(name, status="running", last_ok_at=datetime.now(UTC))
            await asyncio.sleep(interval)

    def _set(self, name: str, **changes: object) -> None:
        self._states[name] = replace(self._states[name], **changes)  # type: ignore[arg-type]
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("supervisor on_change callback failed")


async def run_steps(what: str, steps: list[tuple[str, Callable[[], Awaitable[object]]]]) -> None:
    """Run every step of a shutdown in order, even when some fail.

    Each failure is logged with its traceback; once all steps have run, the first
    failure is raised again (so a caller still learns that stopping went wrong,
    but only after everything that could be stopped was). A cancellation during a
    step does not skip the rest either: it is raised again at the end.
    """
    first: BaseException | None = None
    for name, step in steps:
        try:
            await step()
        except asyncio.CancelledError as exc:
            log.warning("%s: cancelled during %s; stopping the rest anyway", what, name)
            first = first or exc
        except Exception as exc:
            log.exception("%s: %s failed", what, name)
            first = first or exc
    if first is not None:
        raise first
