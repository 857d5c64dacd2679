"""Why a flow file was not run: every problem the check found, one per line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.flow_plan import describe_problems
from backend.api import FlowProblem

__all__ = ["FlowProblemsDialog"]


class FlowProblemsDialog(QDialog):
    """Lists *problems* of the flow at *path* as ``file:line: command: message`` lines.

    Shown with ``open()`` (never ``exec()``: a nested loop would re-enter the
    backend); deletes itself when closed. Nothing ran: the dialog says so.
    """

    def __init__(self, path: Path, problems: Sequence[FlowProblem], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("flowProblems")
        self.setWindowTitle("Flow not run")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(760, 320)
        count = len(problems)
        self._heading = QLabel(
            f"<b>{path.name}</b> has {count} problem{'s' if count != 1 else ''}; nothing was run."
            "<br>Fix the file and run it again."
        )
        self._heading.setTextFormat(Qt.TextFormat.RichText)
        self._text = QPlainTextEdit(describe_problems(problems))
        self._text.setReadOnly(True)
        self._text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self._text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self._copy = QPushButton("Copy")
        self._copy.setAutoDefault(False)
        buttons.addButton(self._copy, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(self._heading)
        layout.addWidget(self._text, 1)
        layout.addWidget(buttons)
        buttons.rejected.connect(self.reject)
        self._copy.clicked.connect(self._on_copy_clicked)

    def heading_text(self) -> str:
        return self._heading.text()

    def problems_text(self) -> str:
        return self._text.toPlainText()

    @Slot()
    def _on_copy_clicked(self) -> None:
        QApplication.clipboard().setText(self._text.toPlainText())
