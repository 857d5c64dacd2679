"""The control room window: device sidebar, live grid, jobs panel, toolbar, health."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QPoint, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.dialogs.add_devices import AddDevicesDialog
from app.errors import describe_error
from app.jobs_feed import JobsFeed
from app.models.devices import LIVE_STATES, DeviceTableModel
from app.models.jobs import JobTableModel
from app.paths import missing_assets
from app.ports import Backend, FlowLoader
from app.theme import icon
from app.widgets.device_selection import DeviceSelection
from app.widgets.flow_launcher import FlowLauncher
from app.widgets.flow_runs_dock import FlowRunsDock
from app.widgets.grid_view import LAYOUTS, Encoding, GridView
from app.widgets.jobs_panel import JobsPanel
from app.widgets.sidebar import Sidebar
from app.widgets.status import DockerBanner, StatusBar
from app.widgets.window_layout import fill_menus, fill_toolbar, pane_menu
from backend.api import CorralError, DeviceInfo, Health, JobInfo, load_flow

__all__ = ["HEALTH_INTERVAL_MS", "MainWindow", "describe_error"]

logger = logging.getLogger(__name__)

HEALTH_INTERVAL_MS = 5000
_HEALTH_TIMEOUT_S = 10.0
_LAYOUT_LABELS = {1: "1", 2: "2×2", 3: "3×3", 4: "4×4"}  # noqa: RUF001


class MainWindow(QMainWindow):
    """Shows devices and their live screens; turns operator requests into backend calls.

    Backend calls are coroutines scheduled on the running (qasync) loop; a failed
    call is shown to the operator, never raised into Qt. Call ``start()`` once the
    loop runs. ``closed`` is emitted after the window let go of the backend
    (listeners removed, tasks cancelled); stopping the backend is the owner's job.
    The jobs panel (a dock, toggled by the "jobs" action) lists jobs only while
    it is shown, refreshed by the backend's job notifications.
    """

    closed = Signal()
    devices_loaded = Signal()

    def __init__(
        self,
        backend: Backend,
        parent: QWidget | None = None,
        *,
        grid_encoding: Encoding = "raw",
        flow_loader: FlowLoader | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self._backend = backend
        self._tasks: set[asyncio.Task[Any]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._dialog: AddDevicesDialog | None = None
        self._loaded = False
        self._closing = False

        self.setWindowTitle("Corral")
        self.setWindowIcon(icon("app"))
        self.resize(1440, 900)

        self._model = DeviceTableModel(self)
        self._sidebar = Sidebar(self._model)
        self._grid = GridView(encoding=grid_encoding)
        self._grid.set_url_provider(self._backend.pane_url)
        self._banner = DockerBanner()
        self._status = StatusBar()
        self.setStatusBar(self._status)
        self._status.show_counts({})

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(4, 8, 8, 8)
        right_layout.setSpacing(6)
        right_layout.addWidget(self._banner)
        right_layout.addWidget(self._grid, 1)
        self._splitter = QSplitter(Qt.Orientation.Horizontal)
        self._splitter.addWidget(self._sidebar)
        self._splitter.addWidget(right)
        self._splitter.setStretchFactor(1, 1)
        self._splitter.setSizes([480, 960])
        self._splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self._splitter)

        self._jobs_model = JobTableModel(self._model, self)
        self._jobs_panel = JobsPanel(self._jobs_model)
        self._jobs_feed = JobsFeed(self._backend, self._on_feed_jobs_listed, self._on_feed_listing_failed)
        self._jobs_panel.set_limit(self._jobs_feed.limit)
        self._jobs_dock = QDockWidget("Jobs", self)
        self._jobs_dock.setObjectName("jobsDock")
        self._jobs_dock.setWidget(self._jobs_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self._jobs_dock)
        self.resizeDocks([self._jobs_dock], [270], Qt.Orientation.Vertical)
        self._jobs_dock.hide()

        self._selection = DeviceSelection(self._sidebar, self._grid, self)
        self._settings = settings or QSettings(
            QSettings.Format.IniFormat, QSettings.Scope.UserScope, "corral", "app", self
        )
        self._launcher = FlowLauncher(
            backend, self._model, self._selection.ids, flow_loader or load_flow, self._settings, self
        )
        self._sidebar.set_menu_actions([self._launcher.action()])
        self._runs_dock = FlowRunsDock(backend, self._model, self._grid, self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self._runs_dock)
        self.tabifyDockWidget(self._jobs_dock, self._runs_dock)
        self._runs_dock.hide()

        self._build_actions()
        self._build_toolbar()
        self._build_menus()

        self._health_timer = QTimer(self)
        self._health_timer.setInterval(HEALTH_INTERVAL_MS)
        self._escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)

        self._model.device_changed.connect(self._on_model_device_changed)
        self._model.device_removed.connect(self._on_model_device_removed)
        self._model.rowsInserted.connect(self._on_model_rows_changed)
        self._model.rowsRemoved.connect(self._on_model_rows_changed)
        self._model.dataChanged.connect(self._on_model_rows_changed)
        self._sidebar.remove_requested.connect(self._on_sidebar_remove_requested)
        self._sidebar.show_requested.connect(self._on_sidebar_show_requested)
        self._selection.changed.connect(self._on_selection_changed)
        self._launcher.message.connect(self._status.showMessage)
        self._launcher.runs_started.connect(self._runs_dock.show_runs)
        self._runs_dock.message.connect(self._status.showMessage)
        self._grid.focus_changed.connect(self._on_grid_focus_changed)
        self._grid.control_changed.connect(self._on_grid_control_changed)
        self._grid.context_menu_requested.connect(self._on_grid_context_menu_requested)
        self._banner.retry_requested.connect(self._on_banner_retry_requested)
        self._jobs_panel.retry_requested.connect(self._on_jobs_panel_retry_requested)
        self._jobs_panel.cancel_requested.connect(self._on_jobs_panel_cancel_requested)
        self._jobs_panel.state_filter_changed.connect(self._on_jobs_panel_state_filter_changed)
        self._jobs_dock.visibilityChanged.connect(self._on_jobs_dock_visibility_changed)
        self._health_timer.timeout.connect(self._on_health_timer_timeout)
        self._escape.activated.connect(self._on_escape_activated)

        problem = missing_assets()
        if problem:
            self._status.showMessage(problem)
            logger.error(problem)

    # -- queries ---------------------------------------------------------------

    def model(self) -> DeviceTableModel:
        return self._model

    def sidebar(self) -> Sidebar:
        return self._sidebar

    def grid(self) -> GridView:
        return self._grid

    def banner(self) -> DockerBanner:
        return self._banner

    def status(self) -> StatusBar:
        return self._status

    def add_devices_dialog(self) -> AddDevicesDialog | None:
        return self._dialog

    def jobs_panel(self) -> JobsPanel:
        return self._jobs_panel

    def jobs_dock(self) -> QDockWidget:
        return self._jobs_dock

    def jobs_feed(self) -> JobsFeed:
        return self._jobs_feed

    def selection(self) -> DeviceSelection:
        return self._selection

    def launcher(self) -> FlowLauncher:
        return self._launcher

    def runs_dock(self) -> FlowRunsDock:
        return self._runs_dock

    def action(self, name: str) -> QAction:
        """An action by name: add, remove, run-flow, layout-1..4, back, control, jobs, flows, stats, quit."""
        return self._actions[name]

    # -- public slots ----------------------------------------------------------

    @Slot()
    def start(self) -> None:
        """Subscribe to device changes, load the device list, start health polling."""
        self._unsubscribe = self._backend.add_listener(self._on_backend_device_changed)
        self._spawn(self._load_devices(), "Could not load devices")
        self._jobs_feed.start()
        self._runs_dock.start()
        self._refresh_health()
        self._health_timer.start()

    @Slot()
    def open_add_devices(self) -> None:
        if self._dialog is None:
            self._dialog = AddDevicesDialog(self)
            self._dialog.provision_requested.connect(self._on_dialog_provision_requested)
            self._dialog.finished.connect(self._on_dialog_finished)
        self._dialog.show()
        self._dialog.raise_()
        self._dialog.activateWindow()

    @Slot(list)
    def remove_devices(self, device_ids: list[str]) -> None:
        """Ask for confirmation, then queue removal of *device_ids*."""
        if not device_ids:
            return
        names = [d.name for d in (self._model.device(i) for i in device_ids) if d is not None]
        what = f"device {names[0]}" if len(names) == 1 else f"{len(device_ids)} devices"
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Remove devices")
        box.setText(f"Remove {what}?")
        box.setInformativeText("Their containers and data are deleted. This cannot be undone.")
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setObjectName("confirmRemove")

        def on_finished() -> None:
            if box.clickedButton() is remove:
                self._spawn(self._remove(list(device_ids)), "Could not remove devices")

        box.finished.connect(on_finished)
        box.open()

    @Slot()
    def remove_selected(self) -> None:
        ids = self._sidebar.selected_ids()
        if not ids and self._grid.focused_pane():
            ids = [self._grid.focused_pane()]
        self.remove_devices(ids)

    @Slot(int)
    def set_layout(self, columns: int) -> None:
        self._grid.set_layout(columns)
        self._actions[f"layout-{columns}"].setChecked(True)
        self._grid.show_grid()

    # -- private slots ---------------------------------------------------------

    def _on_backend_device_changed(self, device: DeviceInfo) -> None:
        # Called by the backend on the loop; the model does the rest via signals.
        self._model.apply(device)

    @Slot(object)
    def _on_model_device_changed(self, device: DeviceInfo) -> None:
        if device.state in LIVE_STATES:
            self._grid.add_pane(device.id, device.name, device.state)
        elif self._grid.has_pane(device.id):
            self._grid.remove_pane(device.id)
        if self._dialog is not None:
            self._dialog.update_device(device)

    @Slot(str)
    def _on_model_device_removed(self, device_id: str) -> None:
        self._grid.remove_pane(device_id)

    @Slot()
    def _on_model_rows_changed(self) -> None:
        self._status.show_counts(dict(Counter(d.state for d in self._model.devices())))
        self._update_actions()

    @Slot(list)
    def _on_sidebar_remove_requested(self, device_ids: list[str]) -> None:
        self.remove_devices(device_ids)

    @Slot(str)
    def _on_sidebar_show_requested(self, device_id: str) -> None:
        self._grid.focus_pane(device_id)

    @Slot(list)
    def _on_selection_changed(self, device_ids: list[str]) -> None:
        self._update_actions()

    @Slot(str)
    def _on_grid_focus_changed(self, pane_id: str) -> None:
        if pane_id:
            self._sidebar.select_device(pane_id)
        self._update_actions()

    @Slot(str, bool)
    def _on_grid_control_changed(self, pane_id: str, on: bool) -> None:
        self._update_actions()
        device = self._model.device(pane_id)
        name = device.name if device else pane_id
        if on:
            self._status.showMessage(
                f"You control {name}: mouse and keyboard go to the device. Esc releases control.", 8000
            )
        else:
            self._status.showMessage(f"Released control of {name}.", 4000)

    @Slot(str, QPoint)
    def _on_grid_context_menu_requested(self, pane_id: str, position: QPoint) -> None:
        if pane_id and pane_id not in self._selection.ids():
            self._selection.select([pane_id])
        menu = pane_menu(self, self._grid, pane_id, self._actions, self.remove_devices)
        menu.popup(position)

    @Slot()
    def _on_banner_retry_requested(self) -> None:
        self._refresh_health()

    @Slot()
    def _on_health_timer_timeout(self) -> None:
        self._refresh_health()
        if not self._loaded:
            self._spawn(self._load_devices(), "Could not load devices")

    @Slot()
    def _on_escape_activated(self) -> None:
        self._grid.release_control()
        self._grid.show_grid()

    @Slot(str, int)
    def _on_dialog_provision_requested(self, kind: str, count: int) -> None:
        self._spawn(self._provision(kind, count), None)

    @Slot(int)
    def _on_dialog_finished(self, result: int) -> None:
        if self._dialog is not None:
            self._dialog.deleteLater()
            self._dialog = None

    @Slot(bool)
    def _on_control_action_toggled(self, on: bool) -> None:
        target = self._control_target()
        if target:
            self._grid.set_control(target, on)
        self._update_actions()

    @Slot(bool)
    def _on_stats_action_toggled(self, on: bool) -> None:
        self._grid.set_frame_stats(on)

    @Slot(list)
    def _on_jobs_panel_retry_requested(self, job_ids: list[int]) -> None:
        self._spawn(self._retry_jobs(list(job_ids)), "Could not retry the job")

    @Slot(list)
    def _on_jobs_panel_cancel_requested(self, job_ids: list[int]) -> None:
        self._spawn(self._cancel_jobs(list(job_ids)), "Could not cancel the job")

    @Slot(str)
    def _on_jobs_panel_state_filter_changed(self, state: str) -> None:
        self._jobs_feed.set_state(state or None)

    @Slot(bool)
    def _on_jobs_dock_visibility_changed(self, visible: bool) -> None:
        self._jobs_feed.set_active(visible)

    def _on_feed_jobs_listed(self, jobs: list[JobInfo]) -> None:
        # Called by the feed on the loop.
        self._jobs_model.reset_jobs(jobs)
        self._jobs_panel.show_notice("")

    def _on_feed_listing_failed(self, exc: BaseException) -> None:
        if not isinstance(exc, CorralError):
            logger.warning("listing jobs failed", exc_info=exc)
        self._jobs_panel.show_notice(f"Could not list jobs: {describe_error(exc)}")

    # -- Qt overrides ----------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closing:
            self._closing = True
            self._health_timer.stop()
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            self._jobs_feed.stop()
            self._launcher.stop()
            self._runs_dock.stop()
            for task in list(self._tasks):
                task.cancel()
            if self._dialog is not None:
                self._dialog.close()
            for pane_id in self._grid.pane_ids():
                self._grid.remove_pane(pane_id)
            self.closed.emit()
        event.accept()

    # -- backend calls ---------------------------------------------------------

    async def _load_devices(self) -> None:
        devices = await self._backend.devices()
        self._model.reset_devices(devices)
        if not self._loaded:
            self._loaded = True
            self.devices_loaded.emit()

    async def _provision(self, kind: str, count: int) -> None:
        try:
            devices = await self._backend.provision(kind, count)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, CorralError):
                logger.exception("provisioning %d %s device(s) failed", count, kind)
            if self._dialog is not None:
                self._dialog.show_error(describe_error(exc))
            else:
                self._show_error("Could not add devices", exc)
            return
        for device in devices:
            self._model.apply(device)
        if self._dialog is not None:
            self._dialog.track(devices)
        self._status.showMessage(f"Requested {len(devices)} {kind} device(s).", 5000)

    async def _remove(self, device_ids: list[str]) -> None:
        await self._backend.remove(device_ids)
        self._status.showMessage(f"Removing {len(device_ids)} device(s)…", 5000)

    async def _retry_jobs(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            await self._backend.retry_job(job_id)
        what = f"Job {job_ids[0]}" if len(job_ids) == 1 else f"{len(job_ids)} jobs"
        self._status.showMessage(f"{what} queued again.", 5000)

    async def _cancel_jobs(self, job_ids: list[int]) -> None:
        stopping = 0
        for job_id in job_ids:
            job = await self._backend.cancel_job(job_id)
            stopping += job.state == "running"
        what = f"Job {job_ids[0]}" if len(job_ids) == 1 else f"{len(job_ids)} jobs"
        detail = " (running jobs stop at their next checkpoint)" if stopping else ""
        self._status.showMessage(f"{what} cancelled{detail}.", 5000)

    async def _poll_health(self) -> None:
        try:
            health = await asyncio.wait_for(self._backend.health(), _HEALTH_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("health check failed: %s", exc)
            self._status.show_health_unknown(describe_error(exc))
            return
        self._show_health(health)

    # -- helpers ---------------------------------------------------------------

    def _refresh_health(self) -> None:
        if self._health_task is not None and not self._health_task.done():
            return  # the previous check is still waiting; never stack them
        task = self._spawn(self._poll_health(), None)
        self._health_task = task

    def _show_health(self, health: Health) -> None:
        self._status.show_health(health)
        self._banner.show_health(health)
        self._actions["add"].setEnabled(health.docker_ok)
        self._actions["add"].setToolTip(
            "Provision new devices" if health.docker_ok else "Docker is unavailable: see the banner"
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any], error_title: str | None) -> asyncio.Task[Any]:
        """Run *coro* on the loop; show its failure under *error_title* (None: it reports itself)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if finished.cancelled() or self._closing:
                return
            exc = finished.exception()
            if exc is None:
                return
            if error_title is None:
                logger.error("background task failed", exc_info=exc)
                return
            if not isinstance(exc, CorralError):
                logger.error("%s", error_title, exc_info=exc)
            self._show_error(error_title, exc)

        task.add_done_callback(done)
        return task

    def _show_error(self, title: str, exc: BaseException) -> None:
        self._status.showMessage(f"{title}: {describe_error(exc)}", 10_000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, describe_error(exc), parent=self)
        box.setObjectName("errorBox")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # never exec(): a nested loop under qasync would re-enter the backend

    def _control_target(self) -> str:
        if self._grid.control_pane():
            return self._grid.control_pane()
        if self._grid.focused_pane():
            return self._grid.focused_pane()
        ids = self._sidebar.selected_ids()
        if len(ids) == 1 and self._grid.has_pane(ids[0]):
            return ids[0]
        return ""

    def _update_actions(self) -> None:
        self._launcher.update_enabled()
        self._actions["remove"].setEnabled(bool(self._sidebar.selected_ids() or self._grid.focused_pane()))
        self._actions["back"].setEnabled(bool(self._grid.focused_pane()))
        control = self._actions["control"]
        control.blockSignals(True)
        control.setChecked(bool(self._grid.control_pane()))
        control.setEnabled(bool(self._control_target()))
        control.setText("Release control" if self._grid.control_pane() else "Take control")
        control.blockSignals(False)

    def _build_actions(self) -> None:
        a: dict[str, QAction] = {}
        a["add"] = QAction(icon("add"), "Add devices…", self)
        a["add"].setShortcut(QKeySequence("Ctrl+N"))
        a["add"].setToolTip("Provision new devices")
        a["add"].triggered.connect(self.open_add_devices)
        a["remove"] = QAction(icon("remove"), "Remove", self)
        a["remove"].setToolTip("Remove the selected devices")
        a["remove"].triggered.connect(self.remove_selected)
        a["run-flow"] = self._launcher.action()
        layouts = QActionGroup(self)
        layouts.setExclusive(True)
        for columns in LAYOUTS:
            action = QAction(icon(f"layout-{columns}"), _LAYOUT_LABELS[columns], self)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(f"Ctrl+{columns}"))
            action.setToolTip(f"Grid layout {_LAYOUT_LABELS[columns]} (Ctrl+{columns})")
            action.triggered.connect(lambda _checked=False, c=columns: self.set_layout(c))
            layouts.addAction(action)
            a[f"layout-{columns}"] = action
        a[f"layout-{self._grid.layout_columns()}"].setChecked(True)
        a["back"] = QAction(icon("back"), "Back to grid", self)
        a["back"].setToolTip("Return to the grid (Esc)")
        a["back"].triggered.connect(self._grid.show_grid)
        a["control"] = QAction(icon("control"), "Take control", self)
        a["control"].setCheckable(True)
        a["control"].setShortcut(QKeySequence("Ctrl+T"))
        a["control"].setToolTip("Send your mouse and keyboard to the shown device (Ctrl+T; Esc releases)")
        a["control"].toggled.connect(self._on_control_action_toggled)
        a["jobs"] = self._jobs_dock.toggleViewAction()
        a["jobs"].setIcon(icon("jobs"))
        a["jobs"].setText("Jobs")
        a["jobs"].setShortcut(QKeySequence("Ctrl+J"))
        a["jobs"].setToolTip("Show the jobs panel: what provisioning and removal are doing (Ctrl+J)")
        a["flows"] = self._runs_dock.toggle_action()
        a["stats"] = QAction("Show frame rates", self)
        a["stats"].setCheckable(True)
        a["stats"].toggled.connect(self._on_stats_action_toggled)
        a["quit"] = QAction("Quit", self)
        a["quit"].setShortcut(QKeySequence.StandardKey.Quit)
        a["quit"].triggered.connect(self.close)
        self._actions = a
        for action in a.values():
            self.addAction(action)
        self._update_actions()

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        fill_toolbar(bar, self._actions, {"run-flow": self._launcher.recent_menu()})

    def _build_menus(self) -> None:
        fill_menus(self.menuBar(), self._actions, {"recent-flows": self._launcher.recent_menu()})
