"""Which selected device plays each role of a multi-device flow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from app.flow_plan import assignment_problem, default_assignment
from backend.api import DeviceInfo

__all__ = ["FlowRolesDialog"]


class FlowRolesDialog(QDialog):
    """A combo box per role (role -> kind in *roles*) listing *devices* of that kind.

    Starts from ``default_assignment``; Run stays disabled while the choice
    cannot run (a role without a device, one device in two roles), and the
    reason is shown. Accepting emits ``roles_chosen`` with role -> device id.
    Shown with ``open()``; deletes itself when closed.
    """

    roles_chosen = Signal(dict)

    def __init__(
        self,
        flow_name: str,
        roles: Mapping[str, str],
        devices: Sequence[DeviceInfo],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("flowRoles")
        self.setWindowTitle(f"Run {flow_name}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._roles = dict(roles)
        self._devices = list(devices)
        self._boxes: dict[str, QComboBox] = {}
        defaults = default_assignment(self._roles, self._devices)

        intro = QLabel(f"<b>{flow_name}</b> has {len(self._roles)} roles. Choose the device that plays each.")
        intro.setTextFormat(Qt.TextFormat.RichText)
        form = QFormLayout()
        for role, kind in self._roles.items():
            box = QComboBox()
            box.setObjectName(f"role-{role}")
            box.addItem("—", "")
            for device in self._devices:
                if device.kind == kind:
                    box.addItem(device.name, device.id)
            box.setCurrentIndex(max(0, box.findData(defaults.get(role, ""))))
            box.currentIndexChanged.connect(self._on_box_current_index_changed)
            self._boxes[role] = box
            form.addRow(f"{role} ({kind})", box)
        self._problem = QLabel()
        self._problem.setWordWrap(True)
        self._problem.setStyleSheet("color: #f85149")
        self._buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self._run = self._buttons.button(QDialogButtonBox.StandardButton.Ok)
        self._run.setText("Run")
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self._problem)
        layout.addWidget(self._buttons)
        self._buttons.accepted.connect(self._on_buttons_accepted)
        self._buttons.rejected.connect(self.reject)
        self._on_box_current_index_changed()

    def role_box(self, role: str) -> QComboBox:
        return self._boxes[role]

    def run_button(self) -> QWidget:
        return self._run

    def problem_text(self) -> str:
        return self._problem.text()

    def assignment(self) -> dict[str, str]:
        """Role -> chosen device id (roles without a choice left out)."""
        return {role: box.currentData() for role, box in self._boxes.items() if box.currentData()}

    @Slot()
    def _on_box_current_index_changed(self) -> None:
        problem = assignment_problem(self._roles, self.assignment(), self._devices)
        self._problem.setText(problem or "")
        self._problem.setVisible(problem is not None)
        self._run.setEnabled(problem is None)

    @Slot()
    def _on_buttons_accepted(self) -> None:
        if assignment_problem(self._roles, self.assignment(), self._devices) is None:
            self.roles_chosen.emit(self.assignment())
            self.accept()
