"""Coalescing of agent events (disconnects, refusals) before they become database rows.

An agent that flaps, or two holders of one credential, must not write a row per
reconnect. :class:`EventCoalescer` writes the first event of a device and kind at
once, counts the ones that follow within *window* seconds, and writes one summary
row when the window ends (nothing if none followed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["EventCoalescer", "EventWriter"]

log = logging.getLogger(__name__)

EventWriter = Callable[[str, str, str], Awaitable[None]]
"""``write(device_id, kind, message)``: records one event row."""


@dataclass
class _Window:
    message: str
    more: int = 0
    last: str = ""


class EventCoalescer:
    """See the module docstring. Call from the loop; :meth:`stop` cancels what is pending.

    A failed write is logged and dropped: these rows are a history for the
    operator, not state anyone acts on.
    """

    def __init__(self, write: EventWriter, window: float = 10.0) -> None:
        self._write = write
        self._window = window
        self._open: dict[tuple[str, str], _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open_windows(self) -> int:
        """Windows still counting (each ends with a summary row if events followed)."""
        return len(self._open)

    def add(self, device_id: str, kind: str, message: str) -> None:
        key = (device_id, kind)
        window = self._open.get(key)
        if window is not None:
            window.more += 1
            window.last = message
            return
        self._open[key] = _Window(message)
        task = asyncio.create_task(self._run(key, message), name=f"hub-events-{device_id}-{kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: tuple[str, str], message: str) -> None:
        device_id, kind = key
        try:
            await self._write_logged(device_id, kind, message)
            await asyncio.sleep(self._window)
        finally:
            window = self._open.pop(key)
        if window.more:
            times = "once more" if window.more == 1 else f"{window.more} more times"
            last = f" (last: {window.last})" if window.last != window.message else ""
            summary = f"{window.message} {times} within {self._window:g}s{last}"
            await self._write_logged(device_id, kind, summary)

    async def _write_logged(self, device_id: str, kind: str, message: str) -> None:
        try:
            await self._write(device_id, kind, message)
        except Exception as exc:
            log.warning("could not record %s event of device %s: %s", kind, device_id, exc)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._open.clear()
