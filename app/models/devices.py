"""The device table: one row per device, fed with ``DeviceInfo`` snapshots."""

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

from backend.api import DeviceInfo

__all__ = [
    "LIVE_STATES",
    "STATE_COLOURS",
    "Column",
    "DeviceTableModel",
    "device_for_index",
    "format_age",
]

LIVE_STATES = frozenset({"ready", "busy"})
"""States in which a device has a live pane in the grid."""

STATE_COLOURS = {
    "requested": "#d29922",
    "provisioning": "#d29922",
    "booting": "#d29922",
    "ready": "#3fb950",
    "busy": "#58a6ff",
    "stopping": "#d29922",
    "stopped": "#6e7681",
    "failed": "#f85149",
    "removed": "#6e7681",
}

DEVICE_ROLE = Qt.ItemDataRole.UserRole + 1
"""``data(index, DEVICE_ROLE)`` is the row's ``DeviceInfo``."""
SORT_ROLE = Qt.ItemDataRole.UserRole + 2

_AGE_REFRESH_MS = 15_000


class Column(IntEnum):
    NAME = 0
    KIND = 1
    STATE = 2
    AGE = 3
    DETAILS = 4


_HEADERS = {
    Column.NAME: "Name",
    Column.KIND: "Kind",
    Column.STATE: "State",
    Column.AGE: "Age",
    Column.DETAILS: "Details",
}


def format_age(since: datetime, now: datetime) -> str:
    """A short age: ``45s``, ``12m``, ``3h 05m``, ``2d 4h``."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 24:
        return f"{hours}h {minutes % 60:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _details(device: DeviceInfo) -> str:
    if device.state == "failed":
        return device.reason or "failed (no reason given)"
    if device.state in {"requested", "provisioning", "booting"}:
        percent = round(device.progress * 100)
        message = device.progress_message or device.state
        return f"{message} ({percent}%)" if device.progress > 0 else message
    return device.reason or ""


def device_for_index(index: QModelIndex | QPersistentModelIndex) -> DeviceInfo | None:
    """The device of any index of this model or of a proxy over it."""
    value = index.data(DEVICE_ROLE)
    return value if isinstance(value, DeviceInfo) else None


class DeviceTableModel(QAbstractTableModel):
    """Devices as rows, in arrival order; sort and filter with a proxy model.

    Feed it with ``reset_devices`` (a full listing) and ``apply`` (one listener
    snapshot). Snapshots older than the row they would replace are ignored, so a
    listing that raced with listener updates cannot roll a row back. A device in
    state ``removed`` leaves the table unless ``keep_removed`` is set.
    """

    device_changed = Signal(object)
    """A ``DeviceInfo`` that was added or changed (after the model updated)."""
    device_removed = Signal(str)
    """A device id whose row left the table."""

    def __init__(self, parent: QObject | None = None, *, keep_removed: bool = False) -> None:
        super().__init__(parent)
        self._keep_removed = keep_removed
        self._devices: list[DeviceInfo] = []
        self._rows: dict[str, int] = {}
        self._clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._age_timer = QTimer(self)
        self._age_timer.setInterval(_AGE_REFRESH_MS)
        self._age_timer.timeout.connect(self._on_age_timer_timeout)
        self._age_timer.start()

    # -- queries ---------------------------------------------------------------

    def device(self, device_id: str) -> DeviceInfo | None:
        row = self._rows.get(device_id)
        return None if row is None else self._devices[row]

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Replace ``now()`` for ages (tests)."""
        self._clock = clock

    # -- Qt model API ----------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._devices)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return _HEADERS[Column(section)] if 0 <= section < len(Column) else None
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or index.row() >= len(self._devices):
            return None
        device = self._devices[index.row()]
        column = Column(index.column())
        if role == DEVICE_ROLE:
            return device
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(device, column)
        if role == SORT_ROLE:
            if column == Column.AGE:
                return -device.created_at.timestamp()
            return self._display(device, column).lower()
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(device)
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == Column.STATE:
                return QColor(STATE_COLOURS.get(device.state, "#8b949e"))
            if column == Column.DETAILS and device.state == "failed":
                return QColor(STATE_COLOURS["failed"])
            if device.state in {"removed", "stopped"}:
                return QColor("#6e7681")
        if role == Qt.ItemDataRole.TextAlignmentRole and column == Column.AGE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- public slots ----------------------------------------------------------

    @Slot(list)
    def reset_devices(self, devices: list[DeviceInfo]) -> None:
        """Merge a full listing: rows it lacks go away, newer rows win."""
        listed = {device.id for device in devices}
        for device_id in [d.id for d in self._devices if d.id not in listed]:
            self._remove_row(device_id)
        for device in devices:
            self.apply(device)

    @Slot(object)
    def apply(self, device: DeviceInfo) -> None:
        """Take one snapshot (from a listener or a call result)."""
        row = self._rows.get(device.id)
        if row is not None and device.updated_at < self._devices[row].updated_at:
            return
        if device.state == "removed" and not self._keep_removed:
            if row is not None:
                self._remove_row(device.id)
            return
        if row is None:
            row = len(self._devices)
            self.beginInsertRows(QModelIndex(), row, row)
            self._devices.append(device)
            self._rows[device.id] = row
            self.endInsertRows()
        else:
            if self._devices[row] == device:
                return
            self._devices[row] = device
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(Column) - 1))
        self.device_changed.emit(device)

    # -- private slots ---------------------------------------------------------

    @Slot()
    def _on_age_timer_timeout(self) -> None:
        if self._devices:
            last = len(self._devices) - 1
            self.dataChanged.emit(
                self.index(0, Column.AGE), self.index(last, Column.AGE), [Qt.ItemDataRole.DisplayRole]
            )

    # -- helpers ---------------------------------------------------------------

    def _remove_row(self, device_id: str) -> None:
        row = self._rows.pop(device_id)
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._devices[row]
        self._rows = {device.id: index for index, device in enumerate(self._devices)}
        self.endRemoveRows()
        self.device_removed.emit(device_id)

    def _display(self, device: DeviceInfo, column: Column) -> str:
        if column == Column.NAME:
            return device.name
        if column == Column.KIND:
            return device.kind
        if column == Column.STATE:
            return device.state
        if column == Column.AGE:
            return format_age(device.created_at, self._clock())
        return _details(device)

    def _tooltip(self, device: DeviceInfo) -> str:
        lines = [f"{device.name} ({device.kind})", f"State: {device.state}", f"ID: {device.id}"]
        if device.state == "failed":
            lines.append(f"Why: {device.reason or 'no reason given'}")
        elif device.reason:
            lines.append(device.reason)
        if device.progress_message and device.state not in LIVE_STATES:
            lines.append(f"Progress: {device.progress_message} ({round(device.progress * 100)}%)")
        created = device.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"Created: {created}")
        return "\n".join(lines)
