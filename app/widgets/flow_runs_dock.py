"""The Flow runs dock: the panel, its models, the runs feed and the pane overlays, wired."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMessageBox, QWidget

from app.dialogs.screenshot import ScreenshotDialog
from app.errors import describe_error
from app.flow_runs_feed import FlowRunsFeed
from app.models.devices import DeviceTableModel
from app.models.flow_runs import FlowRunTableModel, FlowStepTableModel
from app.pane_overlays import Overlay, PaneOverlays
from app.ports import FlowBackend
from app.theme import icon
from app.widgets.flow_runs_panel import FlowRunsPanel
from app.widgets.grid_view import GridView
from backend.api import CorralError, FlowRunInfo, FlowStepInfo

__all__ = ["FlowRunsDock"]

logger = logging.getLogger(__name__)


class FlowRunsDock(QDockWidget):
    """Shows flow runs and their steps, and each running flow on its devices' panes.

    The overlays follow every run whether the dock is shown or not. Call
    ``start()`` once the loop runs and ``stop()`` before the backend stops.
    """

    message = Signal(str, int)
    """A status-bar line and how long to show it (ms)."""

    def __init__(
        self, backend: FlowBackend, devices: DeviceTableModel, grid: GridView, parent: QWidget
    ) -> None:
        super().__init__("Flow runs", parent)
        self.setObjectName("flowRunsDock")
        self._backend = backend
        self._grid = grid
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self._runs = FlowRunTableModel(devices, self)
        self._steps = FlowStepTableModel(self)
        self._panel = FlowRunsPanel(self._runs, self._steps)
        self.setWidget(self._panel)
        self._overlays = PaneOverlays(self._on_overlays_changed)
        self._feed = FlowRunsFeed(
            backend, self._on_feed_runs, self._on_feed_run, self._on_feed_steps, self._on_feed_error
        )
        self._panel.run_selected.connect(self._on_panel_run_selected)
        self._panel.cancel_requested.connect(self._on_panel_cancel_requested)
        self._panel.screenshot_requested.connect(self._on_panel_screenshot_requested)

    # -- queries ---------------------------------------------------------------

    def panel(self) -> FlowRunsPanel:
        return self._panel

    def runs_model(self) -> FlowRunTableModel:
        return self._runs

    def steps_model(self) -> FlowStepTableModel:
        return self._steps

    def overlays(self) -> PaneOverlays:
        return self._overlays

    def feed(self) -> FlowRunsFeed:
        return self._feed

    def toggle_action(self) -> QAction:
        """Shows and hides the dock (toolbar and View menu)."""
        action = self.toggleViewAction()
        action.setIcon(icon("flows"))
        action.setText("Flow runs")
        action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        action.setToolTip("Show the flow runs panel: runs, their steps and screenshots (Ctrl+Shift+R)")
        return action

    # -- public slots ----------------------------------------------------------

    @Slot()
    def start(self) -> None:
        self._feed.start()

    @Slot()
    def stop(self) -> None:
        self._stopped = True
        self._feed.stop()
        self._overlays.stop()
        self._steps.stop()
        for task in list(self._tasks):
            task.cancel()

    @Slot(list)
    def show_runs(self, runs: list[FlowRunInfo]) -> None:
        """Show the dock with *runs* (just started) listed, the first one selected."""
        for run in runs:
            if self._runs.row_of(run.id) < 0:  # the listener may already have a newer snapshot
                self._runs.apply(run)
        self.show()
        self.raise_()
        if runs:
            self._panel.select_run(runs[0].id)

    # -- private slots ---------------------------------------------------------

    @Slot(int)
    def _on_panel_run_selected(self, run_id: int) -> None:
        watched = run_id if run_id >= 0 else None
        if watched != self._feed.watched:
            self._steps.reset_steps(watched, [])
        self._feed.watch(watched)

    @Slot(list)
    def _on_panel_cancel_requested(self, run_ids: list[int]) -> None:
        self._spawn(self._cancel(list(run_ids)))

    @Slot(str, str)
    def _on_panel_screenshot_requested(self, path: str, title: str) -> None:
        ScreenshotDialog(path, title, self).show()

    def _on_overlays_changed(self, device_id: str, overlay: Overlay | None) -> None:
        self._grid.set_pane_flow(device_id, overlay.to_json() if overlay is not None else "")

    def _on_feed_runs(self, runs: list[FlowRunInfo]) -> None:
        self._runs.reset_runs(runs)
        for run in reversed(runs):  # oldest first: newer runs win a device
            if not run.finished:
                self._overlays.apply(run)

    def _on_feed_run(self, run: FlowRunInfo) -> None:
        self._runs.apply(run)
        self._overlays.apply(run)

    def _on_feed_steps(self, run_id: int, steps: list[FlowStepInfo]) -> None:
        self._steps.reset_steps(run_id, steps)
        self._panel.show_notice("")

    def _on_feed_error(self, exc: BaseException) -> None:
        if not isinstance(exc, CorralError):
            logger.warning("listing flow runs failed", exc_info=exc)
        self._panel.show_notice(f"Could not list flow runs: {describe_error(exc)}")

    # -- backend calls ---------------------------------------------------------

    async def _cancel(self, run_ids: list[int]) -> None:
        for run_id in run_ids:
            await self._backend.cancel_flow_run(run_id)  # the listener brings the new state
        what = f"Run {run_ids[0]}" if len(run_ids) == 1 else f"{len(run_ids)} runs"
        self.message.emit(f"{what} cancelled.", 5000)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if finished.cancelled() or self._stopped:
                return
            exc = finished.exception()
            if exc is None:
                return
            if not isinstance(exc, CorralError):
                logger.error("cancelling a flow run failed", exc_info=exc)
            title = "Could not cancel the run"
            self.message.emit(f"{title}: {describe_error(exc)}", 10_000)
            box = QMessageBox(QMessageBox.Icon.Warning, title, describe_error(exc), parent=self)
            box.setObjectName("errorBox")
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

        task.add_done_callback(done)
