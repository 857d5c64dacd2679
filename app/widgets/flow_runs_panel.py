"""The flow runs panel: runs newest first, the selected run's steps, Cancel."""

from __future__ import annotations

from collections import Counter

from PySide6.QtCore import QItemSelection, QModelIndex, QPersistentModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.models.flow_runs import (
    RUN_ROLE,
    RUN_STATE_COLOURS,
    STEP_ROLE,
    THUMBNAIL_SIZE,
    FlowRunTableModel,
    FlowStepTableModel,
    RunColumn,
    StepColumn,
    can_cancel_run,
    plain_tooltip,
)
from app.theme import icon
from app.widgets.state_dot import StateDotDelegate
from backend.api import FlowRunInfo, FlowStepInfo

__all__ = ["FlowRunsPanel"]

_RUN_WIDTHS = {
    RunColumn.ID: 44,
    RunColumn.FLOW: 110,
    RunColumn.DEVICES: 120,
    RunColumn.STATE: 88,
    RunColumn.STEPS: 50,
    RunColumn.CURRENT: 170,
    RunColumn.ELAPSED: 66,
}
_STEP_WIDTHS = {
    StepColumn.N: 32,
    StepColumn.ROLE: 70,
    StepColumn.LABEL: 220,
    StepColumn.STATE: 80,
    StepColumn.DURATION: 66,
    StepColumn.SCREENSHOT: 108,
}


def _run_colour(index: QModelIndex | QPersistentModelIndex) -> str | None:
    run = index.data(RUN_ROLE)
    return RUN_STATE_COLOURS.get(run.state, "#8b949e") if isinstance(run, FlowRunInfo) else None


def _step_colour(index: QModelIndex | QPersistentModelIndex) -> str | None:
    step = index.data(STEP_ROLE)
    return RUN_STATE_COLOURS.get(step.state, "#8b949e") if isinstance(step, FlowStepInfo) else None


def _table(model: object) -> QTableView:
    table = QTableView()
    table.setModel(model)  # type: ignore[arg-type]
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.setShowGrid(False)
    table.setWordWrap(False)
    table.setTextElideMode(Qt.TextElideMode.ElideRight)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(26)
    header = table.horizontalHeader()
    header.setHighlightSections(False)
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    header.setMinimumSectionSize(32)
    return table


class FlowRunsPanel(QWidget):
    """Lists runs and the steps of the selected one; emits what the operator asks for.

    The panel calls no backend: its owner feeds the models, watches the run in
    ``run_selected`` (its steps go into the steps model) and carries out
    ``cancel_requested`` and ``screenshot_requested``.
    """

    run_selected = Signal(int)
    """The selected run's id, or -1 when none is selected."""
    cancel_requested = Signal(list)
    """Ids of selected runs that are queued or running."""
    screenshot_requested = Signal(str, str)
    """A step's screenshot path and a title, to be shown larger."""

    def __init__(
        self, runs: FlowRunTableModel, steps: FlowStepTableModel, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._runs = runs
        self._steps = steps

        self._summary = QLabel()
        self._summary.setStyleSheet("color: #8b949e")
        self._notice = QLabel()
        self._notice.setTextFormat(Qt.TextFormat.PlainText)  # device errors are not markup
        self._notice.setStyleSheet("color: #f85149")
        self._notice.hide()
        self._cancel = QPushButton(icon("cancel"), "Cancel")
        self._cancel.setObjectName("cancelRun")
        self._cancel.setAutoDefault(False)
        self._cancel.setEnabled(False)
        self._steps_title = QLabel("Select a run to see its steps")
        self._steps_title.setTextFormat(Qt.TextFormat.PlainText)  # flow names are not markup
        self._steps_title.setStyleSheet("color: #8b949e")

        self._runs_table = _table(runs)
        self._runs_table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._runs_table.setItemDelegateForColumn(
            RunColumn.STATE, StateDotDelegate(_run_colour, self._runs_table)
        )
        for column, width in _RUN_WIDTHS.items():
            self._runs_table.horizontalHeader().resizeSection(column, width)
        self._steps_table = _table(steps)
        self._steps_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._steps_table.setIconSize(THUMBNAIL_SIZE)
        # Rows with a thumbnail grow to it; the others stay one line (a run has few steps).
        self._steps_table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._steps_table.setItemDelegateForColumn(
            StepColumn.STATE, StateDotDelegate(_step_colour, self._steps_table)
        )
        for step_column, width in _STEP_WIDTHS.items():
            self._steps_table.horizontalHeader().resizeSection(step_column, width)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self._summary)
        bar.addStretch(1)
        bar.addWidget(self._notice)
        bar.addWidget(self._cancel)
        steps_box = QWidget()
        steps_layout = QVBoxLayout(steps_box)
        steps_layout.setContentsMargins(0, 0, 0, 0)
        steps_layout.setSpacing(4)
        steps_layout.addWidget(self._steps_title)
        steps_layout.addWidget(self._steps_table, 1)
        self._splitter = QSplitter(Qt.Orientation.Horizontal)
        self._splitter.addWidget(self._runs_table)
        self._splitter.addWidget(steps_box)
        self._splitter.setSizes([700, 640])
        self._splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(bar)
        layout.addWidget(self._splitter, 1)

        self._cancel.clicked.connect(self._on_cancel_clicked)
        self._runs_table.selectionModel().selectionChanged.connect(self._on_runs_selection_changed)
        self._steps_table.doubleClicked.connect(self._on_steps_double_clicked)
        runs.runs_changed.connect(self._on_runs_changed)
        runs.dataChanged.connect(self._on_runs_changed)
        steps.steps_changed.connect(self._on_steps_changed)
        self._on_runs_changed()

    # -- queries ---------------------------------------------------------------

    def runs_table(self) -> QTableView:
        return self._runs_table

    def steps_table(self) -> QTableView:
        return self._steps_table

    def cancel_button(self) -> QPushButton:
        return self._cancel

    def summary_text(self) -> str:
        return self._summary.text()

    def steps_title(self) -> str:
        return self._steps_title.text()

    def notice_text(self) -> str:
        return "" if self._notice.isHidden() else self._notice.text()

    def selected_ids(self) -> list[int]:
        rows = self._runs_table.selectionModel().selectedRows()
        return [run.id for run in (index.data(RUN_ROLE) for index in rows) if isinstance(run, FlowRunInfo)]

    # -- public slots ----------------------------------------------------------

    @Slot(int)
    def select_run(self, run_id: int) -> None:
        row = self._runs.row_of(run_id)
        if row >= 0:
            self._runs_table.selectRow(row)

    @Slot(str)
    def show_notice(self, text: str) -> None:
        """A problem with the listing ("" hides it); the full text is the tooltip."""
        self._notice.setText(text if len(text) <= 90 else text[:89] + "…")
        self._notice.setToolTip(plain_tooltip(text))
        self._notice.setVisible(bool(text))

    # -- private slots ---------------------------------------------------------

    @Slot()
    def _on_cancel_clicked(self) -> None:
        ids = self._cancellable()
        if ids:
            self.cancel_requested.emit(ids)

    @Slot(QItemSelection, QItemSelection)
    def _on_runs_selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        ids = self.selected_ids()
        self.run_selected.emit(ids[0] if len(ids) == 1 else -1)
        self._update()

    @Slot(QModelIndex)
    def _on_steps_double_clicked(self, index: QModelIndex) -> None:
        step = self._steps.step(index.row())
        if step is not None and step.screenshot:
            self.screenshot_requested.emit(
                step.screenshot, f"Run {step.run_id}, step {step.index}: {step.label}"
            )

    @Slot()
    def _on_runs_changed(self) -> None:
        runs = self._runs.runs()
        if not runs:
            self._summary.setText("No flow runs yet: select devices, then Run flow…")
        else:
            counts = Counter(run.state for run in runs)
            parts = [f"{len(runs)} run{'s' if len(runs) != 1 else ''}"]
            parts += [
                f"{counts[s]} {s}"
                for s in ("running", "queued", "passed", "failed", "cancelled")
                if counts[s]
            ]
            self._summary.setText("  ·  ".join(parts))
        self._update()

    @Slot()
    def _on_steps_changed(self) -> None:
        run_id = self._steps.run_id()
        run = self._runs.run(run_id) if run_id is not None else None
        if run is None:
            self._steps_title.setText("Select a run to see its steps")
        else:
            self._steps_title.setText(f"Run {run.id}: {run.name} on {self._runs.devices_text(run)}")
        self._steps_table.setColumnHidden(StepColumn.ROLE, not self._steps.has_roles())
        with_shots = any(step.screenshot for step in self._steps.steps())
        self._steps_table.verticalHeader().setDefaultSectionSize(
            THUMBNAIL_SIZE.height() + 6 if with_shots else 26
        )

    # -- helpers ---------------------------------------------------------------

    def _cancellable(self) -> list[int]:
        return [
            run.id for run in (self._runs.run(i) for i in self.selected_ids()) if run and can_cancel_run(run)
        ]

    def _update(self) -> None:
        cancellable = self._cancellable()
        self._cancel.setEnabled(bool(cancellable))
        self._cancel.setText("Cancel" if len(cancellable) <= 1 else f"Cancel {len(cancellable)}")
        self._cancel.setToolTip(
            "Cancel the selected runs: the step in progress stops, the devices stay usable"
            if cancellable
            else "Select a queued or running run to cancel it"
        )
