"""The jobs panel: what the job engine is doing, and Retry/Cancel for the selected jobs."""

from __future__ import annotations

from collections import Counter

from PySide6.QtCore import (
    QItemSelection,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRectF,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.models.jobs import (
    JOB_STATE_COLOURS,
    PROGRESS_ROLE,
    JobColumn,
    JobTableModel,
    can_cancel,
    can_retry,
    job_for_index,
)
from app.theme import icon
from app.widgets.state_dot import StateDotDelegate
from backend.api import JOB_STATES, JobInfo

__all__ = ["ALL_STATES", "JobsPanel"]

ALL_STATES = "all"
"""The state filter entry that lists every job."""

_COLUMN_WIDTHS = {
    JobColumn.ID: 52,
    JobColumn.KIND: 80,
    JobColumn.DEVICE: 128,
    JobColumn.STATE: 104,
    JobColumn.ATTEMPT: 66,
    JobColumn.PROGRESS: 116,
    JobColumn.MESSAGE: 250,
    JobColumn.AGE: 56,
}
_TRACK = QColor("#0f1216")
_TRACK_BORDER = QColor("#2a3038")


def _state_colour(index: QModelIndex | QPersistentModelIndex) -> str | None:
    item = job_for_index(index)
    return None if item is None else JOB_STATE_COLOURS.get(item.state, "#8b949e")


class _ProgressDelegate(QStyledItemDelegate):
    """A thin bar in the job's state colour with the percentage beside it."""

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        job = job_for_index(index)
        # Background and selection as for any cell, without the text.
        plain = QStyleOptionViewItem(option)
        self.initStyleOption(plain, index)
        plain.text = ""
        style = plain.widget.style() if plain.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, plain, painter, plain.widget)
        if job is None:
            return
        fraction = float(index.data(PROGRESS_ROLE) or 0.0)
        rect = option.rect.adjusted(8, 0, -8, 0)
        label_width = option.fontMetrics.horizontalAdvance("100%") + 6
        bar = QRectF(rect.left(), rect.center().y() - 2.5, max(8, rect.width() - label_width), 6)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(_TRACK_BORDER)
        painter.setBrush(_TRACK)
        painter.drawRoundedRect(bar, 3, 3)
        if fraction > 0:
            chunk = QRectF(bar.left(), bar.top(), max(6.0, bar.width() * fraction), bar.height())
            painter.setPen(Qt.PenStyle.NoPen)
            colour = QColor(JOB_STATE_COLOURS.get(job.state, "#8b949e"))
            if job.state in ("queued", "running"):
                colour = QColor("#2f81f7")
            painter.setBrush(colour)
            painter.drawRoundedRect(chunk, 3, 3)
        painter.setPen(QColor("#8b949e"))
        label = QRectF(bar.right() + 6, option.rect.top(), label_width - 6, option.rect.height())
        align = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(label, int(align), f"{round(fraction * 100)}%")
        painter.restore()


class JobsPanel(QWidget):
    """Lists jobs; emits what the operator asks for on the selected ones.

    The panel calls no backend: its owner lists jobs into the model (filtered
    by ``state_filter_changed``) and carries out ``retry_requested`` /
    ``cancel_requested``. Retry is offered for failed and cancelled jobs,
    Cancel for queued and running ones; ``show_notice`` shows why a listing is
    missing or stale.
    """

    retry_requested = Signal(list)
    """Ids of selected jobs that can be retried."""
    cancel_requested = Signal(list)
    """Ids of selected jobs that can be cancelled."""
    state_filter_changed = Signal(str)
    """A job state to list, or "" for every state."""

    def __init__(self, model: JobTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = model
        self._limit = 0

        self._state_box = QComboBox()
        self._state_box.addItem(ALL_STATES, "")
        for state in JOB_STATES:
            self._state_box.addItem(state, state)
        self._state_box.setToolTip("List only jobs in this state")
        self._state_box.setMinimumContentsLength(10)
        show = QLabel("Show")
        show.setBuddy(self._state_box)
        show.setStyleSheet("color: #8b949e")
        self._summary = QLabel()
        self._summary.setStyleSheet("color: #8b949e")
        self._notice = QLabel()
        self._notice.setStyleSheet("color: #f85149")
        self._notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._notice.hide()
        self._retry = QPushButton(icon("retry"), "Retry")
        self._retry.setObjectName("retryJob")
        self._cancel = QPushButton(icon("cancel"), "Cancel")
        self._cancel.setObjectName("cancelJob")
        for button in (self._retry, self._cancel):
            button.setAutoDefault(False)
            button.setEnabled(False)

        self._table = QTableView()
        self._table.setModel(model)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.setAlternatingRowColors(True)
        self._table.setShowGrid(False)
        self._table.setWordWrap(False)
        self._table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._table.verticalHeader().hide()
        self._table.verticalHeader().setDefaultSectionSize(26)
        self._table.setItemDelegateForColumn(JobColumn.STATE, StateDotDelegate(_state_colour, self._table))
        self._table.setItemDelegateForColumn(JobColumn.PROGRESS, _ProgressDelegate(self._table))
        header = self._table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(40)
        for column, width in _COLUMN_WIDTHS.items():
            header.resizeSection(column, width)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.setSpacing(8)
        bar.addWidget(show)
        bar.addWidget(self._state_box)
        bar.addSpacing(6)
        bar.addWidget(self._summary)
        bar.addStretch(1)
        bar.addWidget(self._notice)
        bar.addWidget(self._retry)
        bar.addWidget(self._cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(bar)
        layout.addWidget(self._table, 1)

        self._state_box.currentIndexChanged.connect(self._on_state_box_current_index_changed)
        self._retry.clicked.connect(self._on_retry_clicked)
        self._cancel.clicked.connect(self._on_cancel_clicked)
        self._table.customContextMenuRequested.connect(self._on_table_context_menu_requested)
        self._table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        model.jobs_changed.connect(self._on_model_jobs_changed)
        model.dataChanged.connect(self._on_model_jobs_changed)
        self._on_model_jobs_changed()

    # -- queries ---------------------------------------------------------------

    def model(self) -> JobTableModel:
        return self._model

    def table(self) -> QTableView:
        return self._table

    def state_box(self) -> QComboBox:
        return self._state_box

    def retry_button(self) -> QPushButton:
        return self._retry

    def cancel_button(self) -> QPushButton:
        return self._cancel

    def summary_text(self) -> str:
        return self._summary.text()

    def notice_text(self) -> str:
        return "" if self._notice.isHidden() else self._notice.text()

    def selected_ids(self) -> list[int]:
        ids = []
        for index in self._table.selectionModel().selectedRows():
            job = job_for_index(index)
            if job is not None:
                ids.append(job.id)
        return ids

    # -- public slots ----------------------------------------------------------

    @Slot(int)
    def select_job(self, job_id: int) -> None:
        row = self._model.row_of(job_id)
        if row >= 0:
            self._table.selectRow(row)

    @Slot(str)
    def set_state_filter(self, state: str) -> None:
        """Show *state* in the filter box ("" or "all": every state); emits when it changes."""
        position = self._state_box.findData("" if state == ALL_STATES else state)
        if position >= 0:
            self._state_box.setCurrentIndex(position)

    @Slot(int)
    def set_limit(self, limit: int) -> None:
        """The most jobs one listing holds (mentioned when a listing is full)."""
        self._limit = limit
        self._on_model_jobs_changed()

    @Slot(str)
    def show_notice(self, text: str) -> None:
        """A problem with the listing ("" hides it); the full text is the tooltip."""
        self._notice.setText(text if len(text) <= 90 else text[:89] + "…")
        self._notice.setToolTip(text)
        self._notice.setVisible(bool(text))

    # -- private slots ---------------------------------------------------------

    @Slot(int)
    def _on_state_box_current_index_changed(self, position: int) -> None:
        self.state_filter_changed.emit(self._state_box.itemData(position) or "")

    @Slot()
    def _on_retry_clicked(self) -> None:
        ids = self._retryable()
        if ids:
            self.retry_requested.emit(ids)

    @Slot()
    def _on_cancel_clicked(self) -> None:
        ids = self._cancellable()
        if ids:
            self.cancel_requested.emit(ids)

    @Slot(QPoint)
    def _on_table_context_menu_requested(self, position: QPoint) -> None:
        index = self._table.indexAt(position)
        if index.isValid() and not self._table.selectionModel().isRowSelected(index.row(), index.parent()):
            self._table.selectRow(index.row())
        ids = self.selected_ids()
        if not ids:
            return
        menu = QMenu(self)
        retry = menu.addAction(icon("retry"), self._retry.text(), self._on_retry_clicked)
        retry.setEnabled(self._retry.isEnabled())
        cancel = menu.addAction(icon("cancel"), self._cancel.text(), self._on_cancel_clicked)
        cancel.setEnabled(self._cancel.isEnabled())
        menu.addSeparator()
        errors = [job.error for job in self._selected_jobs() if job.error]
        copy_error = menu.addAction("Copy error" if len(errors) <= 1 else "Copy errors")
        copy_error.setEnabled(bool(errors))
        copy_error.triggered.connect(lambda: QApplication.clipboard().setText("\n\n".join(errors)))
        copy_id = menu.addAction("Copy job ID" if len(ids) == 1 else "Copy job IDs")
        copy_id.triggered.connect(lambda: QApplication.clipboard().setText("\n".join(map(str, ids))))
        menu.popup(self._table.viewport().mapToGlobal(position))

    @Slot(QItemSelection, QItemSelection)
    def _on_selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        self._update_buttons()

    @Slot()
    def _on_model_jobs_changed(self) -> None:
        jobs = self._model.jobs()
        if not jobs:
            self._summary.setText("No jobs" if not self._state_box.currentData() else "No jobs in this state")
        else:
            counts = Counter(job.state for job in jobs)
            parts = [f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}"]
            if self._limit and len(jobs) >= self._limit:
                parts[0] = f"newest {len(jobs)} jobs"
            shown = ("running", "queued", "failed")
            parts += [f"{counts[state]} {state}" for state in shown if counts[state]]
            self._summary.setText("  ·  ".join(parts))
        self._update_buttons()

    # -- helpers ---------------------------------------------------------------

    def _selected_jobs(self) -> list[JobInfo]:
        return [job for job in map(self._model.job, self.selected_ids()) if job is not None]

    def _retryable(self) -> list[int]:
        return [job.id for job in self._selected_jobs() if can_retry(job)]

    def _cancellable(self) -> list[int]:
        return [job.id for job in self._selected_jobs() if can_cancel(job)]

    def _update_buttons(self) -> None:
        retryable, cancellable = self._retryable(), self._cancellable()
        self._retry.setEnabled(bool(retryable))
        self._cancel.setEnabled(bool(cancellable))
        self._retry.setText("Retry" if len(retryable) <= 1 else f"Retry {len(retryable)}")
        self._cancel.setText("Cancel" if len(cancellable) <= 1 else f"Cancel {len(cancellable)}")
        self._retry.setToolTip(
            "Queue the selected failed or cancelled jobs again"
            if retryable
            else "Select a failed or cancelled job to retry it"
        )
        self._cancel.setToolTip(
            "Cancel the selected queued jobs; running ones stop at their next checkpoint"
            if cancellable
            else "Select a queued or running job to cancel it"
        )
