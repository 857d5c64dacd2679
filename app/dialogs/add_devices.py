"""The "Add devices" dialog: choose kind and count, then watch each device come up."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from backend.api import DEVICE_KINDS, MAX_BATCH, DeviceInfo

__all__ = ["MAX_COUNT", "AddDevicesDialog"]

MAX_COUNT = MAX_BATCH
"""The most devices one request may ask for (the backend's batch limit)."""
_DONE_STATES = frozenset({"ready", "busy"})
_FAILED_STATES = frozenset({"failed", "removed", "stopped"})


class _DeviceProgress:
    """One row of the progress list: name, bar, and what is happening."""

    def __init__(self, grid: QGridLayout, row: int, device: DeviceInfo) -> None:
        self.name = QLabel(device.name)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.message = QLabel()
        self.message.setMinimumWidth(240)
        self.message.setWordWrap(True)
        grid.addWidget(self.name, row, 0)
        grid.addWidget(self.bar, row, 1)
        grid.addWidget(self.message, row, 2)
        self.update(device)

    def update(self, device: DeviceInfo) -> None:
        if device.state in _DONE_STATES:
            value, text, colour = 1000, "ready", "#3fb950"
        elif device.state in _FAILED_STATES:
            value = round(device.progress * 1000)
            text = device.reason or device.state
            colour = "#f85149"
        else:
            value = round(device.progress * 1000)
            text = device.progress_message or device.state
            colour = "#8b949e"
        self.bar.setValue(max(0, min(1000, value)))
        self.bar.setProperty("state", device.state)
        chunk = {"#3fb950": "#238636", "#f85149": "#da3633"}.get(colour, "#2f81f7")
        self.bar.setStyleSheet(f"QProgressBar::chunk {{ background: {chunk}; }}")
        self.message.setText(text)
        self.message.setToolTip(text)
        self.message.setStyleSheet(f"color: {colour}")


class AddDevicesDialog(QDialog):
    """Asks for a kind and a count; then shows per-device progress.

    The dialog only asks: it emits ``provision_requested`` and the owner calls the
    backend, then reports back with ``track`` (the devices it got) or
    ``show_error``. Device updates arrive through ``update_device``.
    """

    provision_requested = Signal(str, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add devices")
        self.setMinimumWidth(600)
        self._rows: dict[str, _DeviceProgress] = {}

        self._kind = QComboBox()
        self._kind.addItems(list(DEVICE_KINDS))
        self._count = QSpinBox()
        self._count.setRange(1, MAX_COUNT)
        self._count.setValue(1)
        self._count.setSuffix(" device(s)")
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Kind", self._kind)
        form.addRow("How many", self._count)

        self._error = QLabel()
        self._error.setWordWrap(True)
        self._error.setStyleSheet("color: #f85149")
        self._error.hide()

        self._summary = QLabel()
        self._summary.setStyleSheet("color: #8b949e")
        self._progress_box = QWidget()
        box_layout = QVBoxLayout(self._progress_box)
        box_layout.setContentsMargins(0, 0, 0, 0)
        self._progress_grid = QGridLayout()
        box_layout.addLayout(self._progress_grid)
        box_layout.addStretch(1)
        self._progress_grid.setContentsMargins(0, 0, 0, 0)
        self._progress_grid.setVerticalSpacing(8)
        self._progress_grid.setHorizontalSpacing(10)
        self._progress_grid.setColumnStretch(1, 1)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setWidget(self._progress_box)
        self._scroll.setMinimumHeight(160)
        self._scroll.hide()
        self._summary.hide()

        self._buttons = QDialogButtonBox()
        self._add_button = QPushButton("Add")
        self._add_button.setDefault(True)
        self._buttons.addButton(self._add_button, QDialogButtonBox.ButtonRole.ActionRole)
        self._close_button = self._buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self._close_button.setIcon(QIcon())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 12)
        layout.setSpacing(10)
        layout.addLayout(form)
        layout.addWidget(self._error)
        layout.addWidget(self._summary)
        layout.addWidget(self._scroll, 1)
        layout.addWidget(self._buttons)

        self._add_button.clicked.connect(self._on_add_button_clicked)
        self._buttons.rejected.connect(self.reject)

    # -- queries ---------------------------------------------------------------

    def tracked_ids(self) -> list[str]:
        return list(self._rows)

    def progress_of(self, device_id: str) -> int | None:
        """The bar value (0..1000) of a tracked device (tests)."""
        row = self._rows.get(device_id)
        return None if row is None else row.bar.value()

    def kind_box(self) -> QComboBox:
        return self._kind

    def count_box(self) -> QSpinBox:
        return self._count

    def add_button(self) -> QPushButton:
        return self._add_button

    def error_text(self) -> str:
        return self._error.text() if not self._error.isHidden() else ""

    # -- public slots ----------------------------------------------------------

    @Slot(list)
    def track(self, devices: list[DeviceInfo]) -> None:
        """Show a progress row for each device the backend accepted."""
        self._set_busy(False)
        self._error.hide()
        for device in devices:
            if device.id in self._rows:
                self._rows[device.id].update(device)
                continue
            self._rows[device.id] = _DeviceProgress(self._progress_grid, len(self._rows), device)
        self._scroll.show()
        self._summary.show()
        self._refresh_summary()

    @Slot(object)
    def update_device(self, device: DeviceInfo) -> None:
        row = self._rows.get(device.id)
        if row is not None:
            row.update(device)
            self._refresh_summary()

    @Slot(str)
    def show_error(self, message: str) -> None:
        self._set_busy(False)
        self._error.setText(message)
        self._error.show()

    # -- private slots ---------------------------------------------------------

    @Slot()
    def _on_add_button_clicked(self) -> None:
        self._set_busy(True)
        self._error.hide()
        self.provision_requested.emit(self._kind.currentText(), self._count.value())

    # -- helpers ---------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        self._add_button.setEnabled(not busy)
        self._add_button.setText("Adding…" if busy else "Add")

    def _refresh_summary(self) -> None:
        states = [row.bar.property("state") for row in self._rows.values()]
        ready = sum(state in _DONE_STATES for state in states)
        failed = sum(state in _FAILED_STATES for state in states)
        text = f"{ready} of {len(states)} ready"
        if failed:
            text += f", {failed} failed"
        self._summary.setText(text)
