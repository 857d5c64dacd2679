"""What each device's pane shows of the flow it runs: step, n/m, verdict (no Qt).

Fed with every ``FlowRunInfo`` snapshot; tells its *show* callback what to
draw on a device's pane (an :class:`Overlay`) or that the pane is clear again
(None). A finished run stays shown for *linger* seconds, then clears.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from backend.api import FlowRunInfo

__all__ = ["DEFAULT_LINGER_S", "Overlay", "PaneOverlays", "overlay_for"]

DEFAULT_LINGER_S = 6.0
"""How long a finished run's verdict stays on its panes."""


@dataclass(frozen=True, slots=True)
class Overlay:
    run_id: int
    state: str
    """The run's state: queued, running, passed, failed or cancelled (it picks the colour)."""
    position: str
    """``n/m``: the step running now (or, once finished, the steps done) of all."""
    text: str
    """The step's label while running; the verdict (and why) once finished."""

    def to_json(self) -> str:
        """What the grid page reads (``state``, ``position``, ``text``)."""
        return json.dumps({"state": self.state, "position": self.position, "text": self.text})


def overlay_for(run: FlowRunInfo) -> Overlay:
    """The overlay of one snapshot of *run*."""
    total = run.steps_total
    if run.state == "queued":
        return Overlay(run.id, "queued", f"0/{total}", f"{run.name}: waiting for the device")
    if not run.finished:
        step = min(run.steps_done + 1, total) if total else run.steps_done + 1
        return Overlay(run.id, run.state, f"{step}/{total}", run.current_step or f"{run.name}: starting")
    if run.state == "passed":
        text = f"{run.name}: passed"
    elif run.state == "cancelled":
        text = f"{run.name}: cancelled"
    else:
        reason = (run.error or "").strip().splitlines()
        text = f"{run.name}: failed" + (f": {reason[0]}" if reason else "")
    return Overlay(run.id, run.state, f"{run.steps_done}/{total}", text)


class PaneOverlays:
    """Tracks the overlay of every device a run touches; newer runs win a device.

    ``apply`` takes a snapshot (from the runs listener, on the loop).
    *show(device_id, overlay_or_None)* is called only when what a pane shows
    changes. Clearing after *linger* uses the running loop's timers; ``stop()``
    cancels them.
    """

    def __init__(
        self, show: Callable[[str, Overlay | None], None], *, linger: float = DEFAULT_LINGER_S
    ) -> None:
        self._show = show
        self._linger = linger
        self._shown: dict[str, Overlay] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._done: set[int] = set()
        """Runs whose verdict was shown: later snapshots of them change nothing."""

    def overlay(self, device_id: str) -> Overlay | None:
        return self._shown.get(device_id)

    def apply(self, run: FlowRunInfo) -> None:
        if run.id in self._done:
            return
        overlay = overlay_for(run)
        for device_id in dict.fromkeys(run.devices.values()):
            current = self._shown.get(device_id)
            if current is not None and current.run_id > run.id:
                continue  # a newer run has the pane
            if current == overlay:
                continue
            self._cancel_timer(device_id)
            self._shown[device_id] = overlay
            self._show(device_id, overlay)
            if run.finished:
                loop = asyncio.get_running_loop()
                self._timers[device_id] = loop.call_later(self._linger, self._clear, device_id, run.id)
        if run.finished:
            self._done.add(run.id)

    def stop(self) -> None:
        for device_id in list(self._timers):
            self._cancel_timer(device_id)

    def _clear(self, device_id: str, run_id: int) -> None:
        self._timers.pop(device_id, None)
        current = self._shown.get(device_id)
        if current is not None and current.run_id == run_id:
            del self._shown[device_id]
            self._show(device_id, None)

    def _cancel_timer(self, device_id: str) -> None:
        timer = self._timers.pop(device_id, None)
        if timer is not None:
            timer.cancel()
