"""The jobs table: one row per job, newest first, fed with ``JobInfo`` listings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor

from app.models.devices import DeviceTableModel, format_age
from backend.api import DeviceInfo, JobInfo

__all__ = [
    "JOB_ROLE",
    "JOB_STATE_COLOURS",
    "PROGRESS_ROLE",
    "JobColumn",
    "JobTableModel",
    "can_cancel",
    "can_retry",
    "job_for_index",
]

JOB_STATE_COLOURS = {
    "queued": "#d29922",
    "running": "#58a6ff",
    "succeeded": "#3fb950",
    "failed": "#f85149",
    "cancelled": "#8b949e",
}

JOB_ROLE = Qt.ItemDataRole.UserRole + 1
"""``data(index, JOB_ROLE)`` is the row's ``JobInfo``."""
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2
"""``data(index, PROGRESS_ROLE)`` is the job's progress, 0..1 (any column)."""

_MUTED = QColor("#6e7681")
_AGE_REFRESH_MS = 15_000


class JobColumn(IntEnum):
    ID = 0
    KIND = 1
    DEVICE = 2
    STATE = 3
    ATTEMPT = 4
    PROGRESS = 5
    MESSAGE = 6
    AGE = 7
    ERROR = 8


_HEADERS = {
    JobColumn.ID: "ID",
    JobColumn.KIND: "Kind",
    JobColumn.DEVICE: "Device",
    JobColumn.STATE: "State",
    JobColumn.ATTEMPT: "Attempt",
    JobColumn.PROGRESS: "Progress",
    JobColumn.MESSAGE: "Message",
    JobColumn.AGE: "Age",
    JobColumn.ERROR: "Error",
}
_RIGHT_ALIGNED = {JobColumn.ID, JobColumn.ATTEMPT, JobColumn.AGE}


def can_retry(job: JobInfo) -> bool:
    """Whether the backend accepts ``retry_job`` for *job* (as far as this snapshot knows)."""
    return job.state in ("failed", "cancelled")


def can_cancel(job: JobInfo) -> bool:
    """Whether ``cancel_job`` makes sense: queued or running, and not already asked to stop."""
    return job.state in ("queued", "running") and not job.cancel_requested


def job_for_index(index: QModelIndex | QPersistentModelIndex) -> JobInfo | None:
    """The job of any index of this model or of a proxy over it."""
    value = index.data(JOB_ROLE)
    return value if isinstance(value, JobInfo) else None


def _first_line(text: str) -> str:
    """The first line of *text*, with an ellipsis when more follows (the tooltip has it all)."""
    lines = text.strip().splitlines()
    if not lines:
        return ""
    return lines[0] if len(lines) == 1 else f"{lines[0]} …"


class JobTableModel(QAbstractTableModel):
    """Jobs as rows in the order of the last listing (the backend's: newest first).

    ``reset_jobs`` merges a listing row by row, so selections and scroll
    position survive the refreshes that follow every change. Device names come
    from *devices*; names of devices that have since left that model are
    remembered, and a device never seen shows its short id.
    """

    jobs_changed = Signal()
    """Emitted after a listing was merged (rows or their contents may have changed)."""

    def __init__(self, devices: DeviceTableModel | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._devices = devices
        self._jobs: list[JobInfo] = []
        self._names: dict[str, str] = {}
        self._clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._age_timer = QTimer(self)
        self._age_timer.setInterval(_AGE_REFRESH_MS)
        self._age_timer.timeout.connect(self._on_age_timer_timeout)
        self._age_timer.start()
        if devices is not None:
            for device in devices.devices():
                self._names[device.id] = device.name
            devices.device_changed.connect(self._on_devices_device_changed)

    # -- queries ---------------------------------------------------------------

    def jobs(self) -> list[JobInfo]:
        return list(self._jobs)

    def job(self, job_id: int) -> JobInfo | None:
        return next((job for job in self._jobs if job.id == job_id), None)

    def row_of(self, job_id: int) -> int:
        """The row of *job_id*, or -1."""
        return next((row for row, job in enumerate(self._jobs) if job.id == job_id), -1)

    def device_name(self, device_id: str | None) -> str:
        if not device_id:
            return ""
        device = self._devices.device(device_id) if self._devices is not None else None
        if device is not None:
            return device.name
        return self._names.get(device_id, device_id[:8])

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Replace ``now()`` for ages (tests)."""
        self._clock = clock

    # -- Qt model API ----------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._jobs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(JobColumn)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(JobColumn):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return _HEADERS[JobColumn(section)]
        if role == Qt.ItemDataRole.TextAlignmentRole and JobColumn(section) in _RIGHT_ALIGNED:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or index.row() >= len(self._jobs):
            return None
        job = self._jobs[index.row()]
        column = JobColumn(index.column())
        if role == JOB_ROLE:
            return job
        if role == PROGRESS_ROLE:
            return _progress(job)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(job, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(job, column)
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(job, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _RIGHT_ALIGNED:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- public slots ----------------------------------------------------------

    @Slot(list)
    def reset_jobs(self, jobs: list[JobInfo]) -> None:
        """Show *jobs* (a full listing, in display order): rows move as little as possible."""
        if not self._jobs:
            if jobs:
                self.beginInsertRows(QModelIndex(), 0, len(jobs) - 1)
                self._jobs = list(jobs)
                self.endInsertRows()
            self.jobs_changed.emit()
            return
        wanted = {job.id for job in jobs}
        for row in range(len(self._jobs) - 1, -1, -1):
            if self._jobs[row].id not in wanted:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._jobs[row]
                self.endRemoveRows()
        rows = {job.id: row for row, job in enumerate(self._jobs)}
        for position, job in enumerate(jobs):
            current = self._jobs[position] if position < len(self._jobs) else None
            if current is not None and current.id == job.id:
                if current != job:
                    self._jobs[position] = job
                    self.dataChanged.emit(self.index(position, 0), self.index(position, len(JobColumn) - 1))
                continue
            old_row = rows.get(job.id)
            if old_row is not None and old_row > position:
                # Listed in a different order than before: take it out, put it in below.
                self.beginRemoveRows(QModelIndex(), old_row, old_row)
                del self._jobs[old_row]
                self.endRemoveRows()
            self.beginInsertRows(QModelIndex(), position, position)
            self._jobs.insert(position, job)
            self.endInsertRows()
            rows = {listed.id: row for row, listed in enumerate(self._jobs)}
        self.jobs_changed.emit()

    # -- private slots ---------------------------------------------------------

    @Slot(object)
    def _on_devices_device_changed(self, device: DeviceInfo) -> None:
        if self._names.get(device.id) == device.name:
            return
        self._names[device.id] = device.name
        for row, job in enumerate(self._jobs):
            if job.device_id == device.id:
                index = self.index(row, JobColumn.DEVICE)
                self.dataChanged.emit(index, index)

    @Slot()
    def _on_age_timer_timeout(self) -> None:
        if self._jobs:
            last = len(self._jobs) - 1
            self.dataChanged.emit(
                self.index(0, JobColumn.AGE),
                self.index(last, JobColumn.AGE),
                [Qt.ItemDataRole.DisplayRole],
            )

    # -- helpers ---------------------------------------------------------------

    def _display(self, job: JobInfo, column: JobColumn) -> str:
        if column == JobColumn.ID:
            return str(job.id)
        if column == JobColumn.KIND:
            return job.kind
        if column == JobColumn.DEVICE:
            return self.device_name(job.device_id) or "—"
        if column == JobColumn.STATE:
            return job.state
        if column == JobColumn.ATTEMPT:
            return f"{job.attempts}/{job.max_attempts}"
        if column == JobColumn.PROGRESS:
            return f"{round(_progress(job) * 100)}%"
        if column == JobColumn.MESSAGE:
            return _message(job)
        if column == JobColumn.AGE:
            return format_age(job.created_at, self._clock())
        return _first_line(job.error or "")

    def _tooltip(self, job: JobInfo, column: JobColumn) -> str:
        if column == JobColumn.ERROR and job.error:
            return job.error
        lines = [
            f"Job {job.id} ({job.kind})",
            f"State: {job.state}" + (" (cancel requested)" if job.cancel_requested else ""),
            f"Attempt {job.attempts} of {job.max_attempts}",
        ]
        if job.device_id:
            lines.append(f"Device: {self.device_name(job.device_id)} ({job.device_id})")
        if job.progress_message:
            lines.append(f"Progress: {job.progress_message} ({round(_progress(job) * 100)}%)")
        if job.error:
            lines.append(f"Error: {job.error}")
        lines.append(f"Created: {job.created_at.astimezone().strftime('%Y-%m-%d %H:%M:%S')}")
        lines.append(f"Updated: {job.updated_at.astimezone().strftime('%Y-%m-%d %H:%M:%S')}")
        return "\n".join(lines)

    def _is_listed(self, device_id: str) -> bool:
        return self._devices is not None and self._devices.device(device_id) is not None

    def _foreground(self, job: JobInfo, column: JobColumn) -> QColor | None:
        if column == JobColumn.STATE:
            return QColor(JOB_STATE_COLOURS.get(job.state, "#8b949e"))
        if column == JobColumn.ERROR and job.error:
            return QColor(JOB_STATE_COLOURS["failed"] if job.state == "failed" else "#d29922")
        if column == JobColumn.DEVICE and job.device_id and not self._is_listed(job.device_id):
            return _MUTED  # the device is gone (removed)
        if column in (JobColumn.ID, JobColumn.AGE):
            return _MUTED
        if column == JobColumn.MESSAGE and job.state in ("succeeded", "failed", "cancelled"):
            return _MUTED  # the last step it reported, not what it is doing
        return None


def _progress(job: JobInfo) -> float:
    return 1.0 if job.state == "succeeded" else max(0.0, min(1.0, job.progress))


def _message(job: JobInfo) -> str:
    if job.cancel_requested and job.state in ("queued", "running"):
        return "cancelling…"
    return job.progress_message
