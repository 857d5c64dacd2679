"""The device sidebar: a filter box over the device table."""

from __future__ import annotations

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRegularExpression,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.models.devices import (
    LIVE_STATES,
    SORT_ROLE,
    STATE_COLOURS,
    Column,
    DeviceTableModel,
    device_for_index,
)
from app.theme import icon
from app.widgets.state_dot import StateDotDelegate

__all__ = ["DeviceFilterModel", "Sidebar"]


class DeviceFilterModel(QSortFilterProxyModel):
    """Matches the filter text against name, kind, state and details, ignoring case."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        pattern = self.filterRegularExpression()
        if not pattern.pattern():
            return True
        model = self.sourceModel()
        for column in Column:
            text = model.index(source_row, column, source_parent).data()
            if text and pattern.match(str(text)).hasMatch():
                return True
        return False


def _state_colour(index: QModelIndex | QPersistentModelIndex) -> str | None:
    item = device_for_index(index)
    return None if item is None else STATE_COLOURS.get(item.state, "#8b949e")


class Sidebar(QWidget):
    """Lists devices; emits what the operator asks for on the selected ones."""

    remove_requested = Signal(list)
    """Device ids the operator wants removed."""
    show_requested = Signal(str)
    """A device whose pane should fill the grid area."""
    selection_changed = Signal(list)
    """Device ids now selected."""

    def __init__(self, model: DeviceTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = model
        self._menu_actions: list[QAction] = []
        self._proxy = DeviceFilterModel(self)
        self._proxy.setSourceModel(model)

        self._title = QLabel("Devices")
        self._title.setObjectName("sidebarTitle")
        self._title.setStyleSheet("font-weight: 600; font-size: 13px; padding: 2px 2px 0 2px;")
        self._filter = QLineEdit()
        self._filter.setPlaceholderText("Filter by name, kind, state…")
        self._filter.setClearButtonEnabled(True)
        self._table = QTableView()
        self._table.setModel(self._proxy)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.setSortingEnabled(True)
        self._table.sortByColumn(Column.NAME, Qt.SortOrder.AscendingOrder)
        self._table.setAlternatingRowColors(True)
        self._table.setShowGrid(False)
        self._table.setWordWrap(False)
        self._table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._table.verticalHeader().hide()
        self._table.verticalHeader().setDefaultSectionSize(26)
        self._table.setItemDelegateForColumn(Column.STATE, StateDotDelegate(_state_colour, self._table))
        self._table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header = self._table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in ((Column.NAME, 132), (Column.KIND, 70), (Column.STATE, 112), (Column.AGE, 64)):
            header.resizeSection(column, width)
        header.setMinimumSectionSize(48)
        # Details is elided (full text in the tooltip) rather than scrolled to.
        self._table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self._remove_action = QAction(icon("remove"), "Remove", self)
        self._remove_action.setShortcut(QKeySequence.StandardKey.Delete)
        self._remove_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._remove_action.setEnabled(False)
        self._table.addAction(self._remove_action)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.setSpacing(6)
        layout.addWidget(self._title)
        layout.addWidget(self._filter)
        layout.addWidget(self._table, 1)

        self._filter.textChanged.connect(self._on_filter_text_changed)
        self._table.customContextMenuRequested.connect(self._on_table_context_menu_requested)
        self._table.doubleClicked.connect(self._on_table_double_clicked)
        self._table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self._remove_action.triggered.connect(self._on_remove_action_triggered)
        model.rowsInserted.connect(self._on_model_rows_changed)
        model.rowsRemoved.connect(self._on_model_rows_changed)
        self._on_model_rows_changed()

    # -- queries ---------------------------------------------------------------

    def table(self) -> QTableView:
        return self._table

    def filter_box(self) -> QLineEdit:
        return self._filter

    def selected_ids(self) -> list[str]:
        ids = []
        for index in self._table.selectionModel().selectedRows():
            device = device_for_index(index)
            if device is not None:
                ids.append(device.id)
        return ids

    def set_menu_actions(self, actions: list[QAction]) -> None:
        """Actions on the selected devices offered first in the context menu (e.g. Run flow…)."""
        self._menu_actions = list(actions)

    # -- public slots ----------------------------------------------------------

    @Slot(list)
    def select_devices(self, device_ids: list[str]) -> None:
        """Select exactly the rows of *device_ids* that the filter shows (one ``selection_changed``)."""
        wanted = set(device_ids)
        selection = QItemSelection()
        for row in range(self._proxy.rowCount()):
            device = device_for_index(self._proxy.index(row, 0))
            if device is not None and device.id in wanted:
                selection.select(
                    self._proxy.index(row, 0), self._proxy.index(row, self._proxy.columnCount() - 1)
                )
        if set(self.selected_ids()) == wanted:
            return
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self._table.selectionModel().select(selection, flags)

    @Slot(str)
    def select_device(self, device_id: str) -> None:
        for row in range(self._proxy.rowCount()):
            device = device_for_index(self._proxy.index(row, 0))
            if device is not None and device.id == device_id:
                self._table.selectRow(row)
                return

    # -- private slots ---------------------------------------------------------

    @Slot(str)
    def _on_filter_text_changed(self, text: str) -> None:
        escaped = QRegularExpression.escape(text.strip())
        self._proxy.setFilterRegularExpression(
            QRegularExpression(escaped, QRegularExpression.PatternOption.CaseInsensitiveOption)
        )

    @Slot(QPoint)
    def _on_table_context_menu_requested(self, position: QPoint) -> None:
        index = self._table.indexAt(position)
        if index.isValid() and not self._table.selectionModel().isRowSelected(index.row(), index.parent()):
            self._table.selectRow(index.row())
        ids = self.selected_ids()
        if not ids:
            return
        menu = QMenu(self)
        if self._menu_actions:
            menu.addActions(self._menu_actions)
            menu.addSeparator()
        devices = [self._model.device(device_id) for device_id in ids]
        if len(ids) == 1 and devices[0] is not None and devices[0].state in LIVE_STATES:
            menu.addAction(icon("layout-1"), "Show in grid", lambda: self.show_requested.emit(ids[0]))
        copy = menu.addAction("Copy device ID" if len(ids) == 1 else "Copy device IDs")
        copy.triggered.connect(lambda: QApplication.clipboard().setText("\n".join(ids)))
        menu.addSeparator()
        label = "Remove device" if len(ids) == 1 else f"Remove {len(ids)} devices"
        remove = menu.addAction(icon("remove"), label)
        remove.triggered.connect(lambda: self.remove_requested.emit(ids))
        menu.popup(self._table.viewport().mapToGlobal(position))

    @Slot(QModelIndex)
    def _on_table_double_clicked(self, index: QModelIndex) -> None:
        device = device_for_index(index)
        if device is not None and device.state in LIVE_STATES:
            self.show_requested.emit(device.id)

    @Slot(QItemSelection, QItemSelection)
    def _on_selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        ids = self.selected_ids()
        self._remove_action.setEnabled(bool(ids))
        self.selection_changed.emit(ids)

    @Slot()
    def _on_remove_action_triggered(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.remove_requested.emit(ids)

    @Slot()
    def _on_model_rows_changed(self) -> None:
        count = self._model.rowCount()
        self._title.setText(f"Devices  ·  {count}" if count else "Devices")
