"""The flow runs table (newest first) and the steps table of one run."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QImage

from app.models.devices import DeviceTableModel
from backend.api import DEFAULT_FLOW_ROLE, DeviceInfo, FlowRunInfo, FlowStepInfo

__all__ = [
    "RUN_ROLE",
    "RUN_STATE_COLOURS",
    "STEP_ROLE",
    "THUMBNAIL_SIZE",
    "FlowRunTableModel",
    "FlowStepTableModel",
    "RunColumn",
    "StepColumn",
    "can_cancel_run",
    "format_duration",
    "plain_tooltip",
]

logger = logging.getLogger(__name__)

RUN_STATE_COLOURS = {
    "queued": "#d29922",
    "running": "#58a6ff",
    "passed": "#3fb950",
    "failed": "#f85149",
    "cancelled": "#8b949e",
    "skipped": "#8b949e",
}
"""Run and step states in the grid page's colours (resources/grid/grid.css)."""

RUN_ROLE = Qt.ItemDataRole.UserRole + 1
"""``data(index, RUN_ROLE)`` is the row's ``FlowRunInfo``."""
STEP_ROLE = Qt.ItemDataRole.UserRole + 2
"""``data(index, STEP_ROLE)`` is the row's ``FlowStepInfo``."""
THUMBNAIL_SIZE = QSize(96, 54)

_MUTED = QColor("#6e7681")
_TICK_MS = 1000


class RunColumn(IntEnum):
    ID = 0
    FLOW = 1
    DEVICES = 2
    STATE = 3
    STEPS = 4
    CURRENT = 5
    ELAPSED = 6
    ERROR = 7


_RUN_HEADERS = {
    RunColumn.ID: "Run",
    RunColumn.FLOW: "Flow",
    RunColumn.DEVICES: "Devices",
    RunColumn.STATE: "State",
    RunColumn.STEPS: "Steps",
    RunColumn.CURRENT: "Current step",
    RunColumn.ELAPSED: "Elapsed",
    RunColumn.ERROR: "Error",
}


class StepColumn(IntEnum):
    N = 0
    ROLE = 1
    LABEL = 2
    STATE = 3
    DURATION = 4
    SCREENSHOT = 5
    ERROR = 6


_STEP_HEADERS = {
    StepColumn.N: "#",
    StepColumn.ROLE: "Role",
    StepColumn.LABEL: "Step",
    StepColumn.STATE: "State",
    StepColumn.DURATION: "Duration",
    StepColumn.SCREENSHOT: "Screenshot",
    StepColumn.ERROR: "Error",
}
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def format_duration(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``3m 05s``, ``1h 02m``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def can_cancel_run(run: FlowRunInfo) -> bool:
    return run.state in ("queued", "running")


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    if not lines:
        return ""
    return lines[0] if len(lines) == 1 else f"{lines[0]} …"


class FlowRunTableModel(QAbstractTableModel):
    """Runs as rows, newest (highest id) first, at most *limit* of them.

    ``apply`` takes one snapshot (from the listener); ``reset_runs`` merges a
    listing but never rolls back a run the listener has updated since.
    Device names come from *devices* (a device never seen shows its short
    id). Elapsed times of unfinished runs tick once a second.
    """

    runs_changed = Signal()

    def __init__(
        self, devices: DeviceTableModel | None = None, parent: QObject | None = None, *, limit: int = 200
    ) -> None:
        super().__init__(parent)
        self._devices = devices
        self._limit = limit
        self._runs: list[FlowRunInfo] = []
        self._live: set[int] = set()
        self._names: dict[str, str] = {}
        self._clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._tick = QTimer(self)
        self._tick.setInterval(_TICK_MS)
        self._tick.timeout.connect(self._on_tick_timeout)
        if devices is not None:
            for device in devices.devices():
                self._names[device.id] = device.name
            devices.device_changed.connect(self._on_devices_device_changed)

    # -- queries ---------------------------------------------------------------

    def runs(self) -> list[FlowRunInfo]:
        return list(self._runs)

    def run(self, run_id: int) -> FlowRunInfo | None:
        return next((run for run in self._runs if run.id == run_id), None)

    def row_of(self, run_id: int) -> int:
        return next((row for row, run in enumerate(self._runs) if run.id == run_id), -1)

    def device_name(self, device_id: str) -> str:
        device = self._devices.device(device_id) if self._devices is not None else None
        if device is not None:
            return device.name
        return self._names.get(device_id, device_id[:8])

    def devices_text(self, run: FlowRunInfo) -> str:
        """``browser-1``, or ``viewer: browser-1, scanner: browser-2`` for a flow with roles."""
        if list(run.devices) == [DEFAULT_FLOW_ROLE]:
            return self.device_name(run.devices[DEFAULT_FLOW_ROLE])
        return ", ".join(f"{role}: {self.device_name(device)}" for role, device in run.devices.items())

    def elapsed(self, run: FlowRunInfo) -> float | None:
        if run.started_at is None:
            return None
        end = run.finished_at or self._clock()
        return (end - run.started_at).total_seconds()

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Replace ``now()`` for elapsed times (tests)."""
        self._clock = clock

    # -- Qt model API ----------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._runs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(RunColumn)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(RunColumn):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return _RUN_HEADERS[RunColumn(section)]
        if role == Qt.ItemDataRole.TextAlignmentRole and section in (RunColumn.ID, RunColumn.ELAPSED):
            return _RIGHT
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or index.row() >= len(self._runs):
            return None
        run = self._runs[index.row()]
        column = RunColumn(index.column())
        if role == RUN_ROLE:
            return run
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(run, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return plain_tooltip(self._tooltip(run, column))
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == RunColumn.STATE:
                return QColor(RUN_STATE_COLOURS.get(run.state, "#8b949e"))
            if column == RunColumn.ERROR:
                return QColor(RUN_STATE_COLOURS["failed"])
            if column in (RunColumn.ID, RunColumn.ELAPSED) or (column == RunColumn.CURRENT and run.finished):
                return _MUTED
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (RunColumn.ID, RunColumn.ELAPSED):
            return _RIGHT
        return None

    # -- public slots ----------------------------------------------------------

    @Slot(object)
    def apply(self, run: FlowRunInfo) -> None:
        """Take one snapshot: its row changes, or it comes in where its id belongs."""
        self._live.add(run.id)
        self._put(run)
        self._changed()

    @Slot(list)
    def reset_runs(self, runs: list[FlowRunInfo]) -> None:
        """Merge a listing (runs the listener already updated keep their newer snapshot)."""
        for run in runs:
            if run.id not in self._live:
                self._put(run)
        self._changed()

    # -- private slots ---------------------------------------------------------

    @Slot()
    def _on_tick_timeout(self) -> None:
        for row, run in enumerate(self._runs):
            if not run.finished and run.started_at is not None:
                index = self.index(row, RunColumn.ELAPSED)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole])

    @Slot(object)
    def _on_devices_device_changed(self, device: DeviceInfo) -> None:
        if self._names.get(device.id) == device.name:
            return
        self._names[device.id] = device.name
        for row, run in enumerate(self._runs):
            if device.id in run.devices.values():
                index = self.index(row, RunColumn.DEVICES)
                self.dataChanged.emit(index, index)

    # -- helpers ---------------------------------------------------------------

    def _changed(self) -> None:
        # Elapsed times tick only while some run is under way.
        if any(not run.finished for run in self._runs):
            if not self._tick.isActive():
                self._tick.start()
        else:
            self._tick.stop()
        self.runs_changed.emit()

    def _put(self, run: FlowRunInfo) -> None:
        row = self.row_of(run.id)
        if row >= 0:
            if self._runs[row] != run:
                self._runs[row] = run
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(RunColumn) - 1))
            return
        row = next((r for r, other in enumerate(self._runs) if other.id < run.id), len(self._runs))
        if row >= self._limit:
            return  # older than everything kept
        self.beginInsertRows(QModelIndex(), row, row)
        self._runs.insert(row, run)
        self.endInsertRows()
        if len(self._runs) > self._limit:
            last = len(self._runs) - 1
            self.beginRemoveRows(QModelIndex(), last, last)
            dropped = self._runs.pop()
            self._live.discard(dropped.id)
            self.endRemoveRows()

    def _display(self, run: FlowRunInfo, column: RunColumn) -> str:
        if column == RunColumn.ID:
            return str(run.id)
        if column == RunColumn.FLOW:
            return run.name
        if column == RunColumn.DEVICES:
            return self.devices_text(run)
        if column == RunColumn.STATE:
            return run.state
        if column == RunColumn.STEPS:
            return f"{run.steps_done}/{run.steps_total}"
        if column == RunColumn.CURRENT:
            return run.current_step
        if column == RunColumn.ELAPSED:
            elapsed = self.elapsed(run)
            return "—" if elapsed is None else format_duration(elapsed)
        return _first_line(run.error)

    def _tooltip(self, run: FlowRunInfo, column: RunColumn) -> str:
        if column == RunColumn.ERROR and run.error:
            return run.error
        lines = [f"Run {run.id}: {run.name} ({run.state})", f"File: {run.file}"]
        lines.append(f"Devices: {self.devices_text(run)}")
        lines.append(f"Steps done: {run.steps_done} of {run.steps_total}")
        if run.current_step:
            lines.append(f"{'Last' if run.finished else 'Current'} step: {run.current_step}")
        if run.error:
            role = f" ({run.failed_role})" if run.failed_role and len(run.devices) > 1 else ""
            lines.append(f"Error{role}: {run.error}")
        lines.append(f"Batch: {run.batch}")
        return "\n".join(lines)


class FlowStepTableModel(QAbstractTableModel):
    """The steps of one run, in the order they started, with screenshot thumbnails.

    Thumbnails are read and scaled in a thread (never on the loop) the first
    time a step with a screenshot is shown; until then the cell is empty.
    """

    steps_changed = Signal()
    """Emitted after every ``reset_steps``."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._run_id: int | None = None
        self._steps: list[FlowStepInfo] = []
        self._thumbnails: dict[str, QImage] = {}
        self._loading: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- queries ---------------------------------------------------------------

    def run_id(self) -> int | None:
        return self._run_id

    def steps(self) -> list[FlowStepInfo]:
        return list(self._steps)

    def step(self, row: int) -> FlowStepInfo | None:
        return self._steps[row] if 0 <= row < len(self._steps) else None

    def thumbnail(self, path: str) -> QImage | None:
        return self._thumbnails.get(path)

    def has_roles(self) -> bool:
        return any(step.role != DEFAULT_FLOW_ROLE for step in self._steps)

    # -- Qt model API ----------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._steps)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(StepColumn)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(StepColumn):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return _STEP_HEADERS[StepColumn(section)]
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or index.row() >= len(self._steps):
            return None
        step = self._steps[index.row()]
        column = StepColumn(index.column())
        if role == STEP_ROLE:
            return step
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(step, column)
        if role == Qt.ItemDataRole.DecorationRole and column == StepColumn.SCREENSHOT and step.screenshot:
            return self._thumbnails.get(step.screenshot)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == StepColumn.ERROR and step.error:
                return plain_tooltip(step.error)
            if column == StepColumn.SCREENSHOT and step.screenshot:
                return plain_tooltip(f"{step.screenshot}\nDouble-click to open it larger.")
            where = f"{step.file}:{step.line}" if step.line is not None else step.file
            return plain_tooltip(f"{step.label}\n{step.command} at {where}")
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == StepColumn.STATE:
                return QColor(RUN_STATE_COLOURS.get(step.state, "#8b949e"))
            if column == StepColumn.ERROR:
                return QColor(RUN_STATE_COLOURS["failed"])
            if column in (StepColumn.N, StepColumn.DURATION, StepColumn.ROLE):
                return _MUTED
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (StepColumn.N, StepColumn.DURATION):
            return _RIGHT
        return None

    # -- public slots ----------------------------------------------------------

    def reset_steps(self, run_id: int | None, steps: list[FlowStepInfo]) -> None:
        """Show *steps* of *run_id* (None: no run).

        A newer listing of the same run changes rows in place and appends the
        steps that started since, so the selection and the scroll position stay.
        """
        old = [step.seq for step in self._steps]
        if run_id == self._run_id and [step.seq for step in steps[: len(old)]] == old:
            for row, step in enumerate(steps[: len(old)]):
                if self._steps[row] != step:
                    self._steps[row] = step
                    self.dataChanged.emit(self.index(row, 0), self.index(row, len(StepColumn) - 1))
            if len(steps) > len(old):
                self.beginInsertRows(QModelIndex(), len(old), len(steps) - 1)
                self._steps.extend(steps[len(old) :])
                self.endInsertRows()
        else:
            self.beginResetModel()
            if run_id != self._run_id:
                self._thumbnails.clear()
            self._run_id = run_id
            self._steps = list(steps)
            self.endResetModel()
        self.steps_changed.emit()
        for step in self._steps:
            if step.screenshot and step.screenshot not in self._thumbnails:
                self._load_thumbnail(step.screenshot)

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- helpers ---------------------------------------------------------------

    def _display(self, step: FlowStepInfo, column: StepColumn) -> str:
        if column == StepColumn.N:
            return str(step.index)
        if column == StepColumn.ROLE:
            return step.role
        if column == StepColumn.LABEL:
            return step.label
        if column == StepColumn.STATE:
            return step.state
        if column == StepColumn.DURATION:
            return "…" if step.duration is None else format_duration(step.duration)
        if column == StepColumn.ERROR:
            return _first_line(step.error)
        return ""

    def _load_thumbnail(self, path: str) -> None:
        if path in self._loading:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a model used on its own): no thumbnails
        self._loading.add(path)
        task = asyncio.ensure_future(self._read_thumbnail(path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_thumbnail(self, path: str) -> None:
        try:
            image = await asyncio.to_thread(_scaled_image, path)
        finally:
            self._loading.discard(path)
        if image is None:
            logger.warning("screenshot %s could not be read", path)
            return
        self._thumbnails[path] = image
        for row, step in enumerate(self._steps):
            if step.screenshot == path:
                index = self.index(row, StepColumn.SCREENSHOT)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


def _scaled_image(path: str) -> QImage | None:
    """The screenshot at *path* scaled to a thumbnail (blocking: run it in a thread)."""
    image = QImage(path)
    if image.isNull():
        return None
    return image.scaled(
        THUMBNAIL_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def plain_tooltip(text: str) -> str:
    """*text* as a tooltip that shows exactly those characters.

    Qt renders a tooltip as rich text when it looks like HTML, and errors and
    labels come from devices and flow files: escaped, a ``<b>`` stays ``<b>``.
    """
    return f"<p style='white-space:pre-wrap'>{html.escape(text)}</p>"
