"""One selection of devices, made in the sidebar or on the grid, shown by both."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot

from app.widgets.grid_view import GridView
from app.widgets.sidebar import Sidebar

__all__ = ["DeviceSelection"]


class DeviceSelection(QObject):
    """Keeps the sidebar's selected rows and the grid's selected panes in step.

    Selecting rows selects their panes (devices without a pane are only
    selected in the sidebar); clicking pane headers selects their rows (a row
    the filter hides cannot show it, the pane still counts). ``ids()`` is
    what the operator selected, in either place.
    """

    changed = Signal(list)
    """The selected device ids, after any change in either place."""

    def __init__(self, sidebar: Sidebar, grid: GridView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._sidebar = sidebar
        self._grid = grid
        self._syncing = False
        sidebar.selection_changed.connect(self._on_sidebar_selection_changed)
        grid.selection_changed.connect(self._on_grid_selection_changed)

    def ids(self) -> list[str]:
        """Selected device ids: the sidebar's rows, then panes selected only on the grid."""
        return list(dict.fromkeys([*self._sidebar.selected_ids(), *self._grid.selected_panes()]))

    # -- public slots ----------------------------------------------------------

    @Slot(list)
    def select(self, device_ids: list[str]) -> None:
        """Select exactly *device_ids* in both places."""
        self._syncing = True
        try:
            self._sidebar.select_devices(device_ids)
        finally:
            self._syncing = False
        self._grid.set_selected(device_ids)
        self.changed.emit(self.ids())

    # -- private slots ---------------------------------------------------------

    @Slot(list)
    def _on_sidebar_selection_changed(self, device_ids: list[str]) -> None:
        if self._syncing:
            return
        self._grid.set_selected(device_ids)
        self.changed.emit(self.ids())

    @Slot(list)
    def _on_grid_selection_changed(self, pane_ids: list[str]) -> None:
        self._syncing = True
        try:
            self._sidebar.select_devices(pane_ids)
        finally:
            self._syncing = False
        self.changed.emit(self.ids())
