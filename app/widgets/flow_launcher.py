"""Run flow…: choose a flow file, check it, pick roles, and start it on the selected devices."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from app.dialogs.flow_problems import FlowProblemsDialog
from app.dialogs.flow_roles import FlowRolesDialog
from app.errors import describe_error
from app.flow_plan import RUNNABLE_STATE, Targets, has_roles, split_targets
from app.models.devices import DeviceTableModel
from app.ports import FlowBackend, FlowLoader
from app.recent_files import RecentFiles
from app.theme import icon
from backend.api import CorralError, DeviceInfo, Flow, FlowError, FlowRunInfo

__all__ = ["FLOW_FILTER", "RECENT_FLOWS_KEY", "FlowLauncher"]

logger = logging.getLogger(__name__)

RECENT_FLOWS_KEY = "flows/recent"
"""Where the recent flow files are kept in the app's QSettings."""
FLOW_FILTER = "Flow files (*.yaml *.yml);;All files (*)"


class FlowLauncher(QObject):
    """Owns the "Run flow…" action and the "Recent flows" menu.

    Runs go to the devices selected when the operator chose the file
    (*selected_ids* is asked then). The file is read and checked in a thread
    (*loader*); a flow with problems opens :class:`FlowProblemsDialog` and
    nothing runs; a flow with roles asks which device plays each
    (:class:`FlowRolesDialog`). Backend failures are shown, never raised into
    Qt. ``stop()`` cancels what is in flight.
    """

    runs_started = Signal(list)
    """``FlowRunInfo`` of the runs a request created."""
    message = Signal(str, int)
    """A status-bar line and how long to show it (ms)."""

    def __init__(
        self,
        backend: FlowBackend,
        devices: DeviceTableModel,
        selected_ids: Callable[[], list[str]],
        loader: FlowLoader,
        settings: QSettings,
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._backend = backend
        self._devices = devices
        self._selected_ids = selected_ids
        self._loader = loader
        self._settings = settings
        self._window = parent
        self._tasks: set[asyncio.Task[Any]] = set()
        self._file_dialog: QFileDialog | None = None
        self._stopped = False
        self._recent = RecentFiles(_stored_list(settings.value(RECENT_FLOWS_KEY, [])))

        self._action = QAction(icon("run"), "Run flow…", self)
        self._action.setShortcut(QKeySequence("Ctrl+R"))
        self._action.setToolTip("Run a flow file on the selected ready devices (Ctrl+R)")
        self._action.triggered.connect(self.open_file_dialog)
        self._recent_menu = QMenu("Recent flows", parent)
        self._recent_menu.setObjectName("recentFlows")
        self._rebuild_recent_menu()
        self.update_enabled()

    # -- queries ---------------------------------------------------------------

    def action(self) -> QAction:
        return self._action

    def recent_menu(self) -> QMenu:
        return self._recent_menu

    def recent_paths(self) -> list[str]:
        return self._recent.paths()

    def file_dialog(self) -> QFileDialog | None:
        """The open file dialog, while one is shown."""
        return self._file_dialog

    def is_busy(self) -> bool:
        """True while a file is being checked or runs are being started."""
        return any(not task.done() for task in self._tasks)

    # -- public slots ----------------------------------------------------------

    @Slot()
    def update_enabled(self) -> None:
        """Enable the actions when at least one selected device is ready."""
        ready = any(device.state == RUNNABLE_STATE for device in self._selected_devices())
        self._action.setEnabled(ready)
        self._recent_menu.setEnabled(ready and bool(self._recent.paths()))

    @Slot()
    def open_file_dialog(self) -> None:
        """Ask for a flow file (non-blocking); choosing one runs it."""
        if self._file_dialog is not None:
            self._file_dialog.raise_()
            self._file_dialog.activateWindow()
            return
        recent = self._recent.paths()
        start = str(Path(recent[0]).parent) if recent else str(Path.cwd())
        dialog = QFileDialog(self._window, "Run flow", start, FLOW_FILTER)
        dialog.setObjectName("runFlowFile")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptOpen)
        # Qt's own dialog: the same on every desktop, and never a nested platform loop.
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self.run_file)
        dialog.finished.connect(self._on_file_dialog_finished)
        self._file_dialog = dialog
        dialog.open()

    @Slot(str)
    def run_file(self, path: str) -> None:
        """Check the flow at *path* and run it on the devices selected now."""
        if not path:
            return
        absolute = str(Path(path).expanduser().absolute())
        self._recent.add(absolute)
        self._store_recent()
        ids = self._selected_ids()
        self._spawn(self._load_and_run(Path(absolute), ids), "Could not run the flow")

    @Slot()
    def clear_recent(self) -> None:
        self._recent.clear()
        self._store_recent()

    def stop(self) -> None:
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        if self._file_dialog is not None:
            self._file_dialog.close()

    # -- private slots ---------------------------------------------------------

    @Slot(int)
    def _on_file_dialog_finished(self, result: int) -> None:
        self._file_dialog = None

    # -- work ------------------------------------------------------------------

    async def _load_and_run(self, path: Path, device_ids: list[str]) -> None:
        try:
            flow = await asyncio.to_thread(self._loader, path, {})
        except FlowError as exc:
            if not await asyncio.to_thread(path.is_file):
                self._recent.remove(str(path))
                self._store_recent()
            FlowProblemsDialog(path, exc.problems, self._window).open()
            self.message.emit(f"{path.name} was not run: {len(exc.problems)} problem(s).", 8000)
            return
        selected = [d for d in (self._devices.device(i) for i in device_ids) if d is not None]
        kinds = set(flow.roles.values())
        targets = split_targets(selected, kinds)
        if not targets.devices:
            why = f" ({targets.skipped_text()})" if targets.skipped else ""
            raise CorralError(
                f"None of the selected devices can run {flow.name}{why}: select a ready device."
            )
        if has_roles(flow):
            self._ask_roles(flow, targets)
            return
        runs = await self._backend.run_flow(flow, devices=[d.id for d in targets.devices])
        self._started(flow, runs, targets)

    def _ask_roles(self, flow: Flow, targets: Targets) -> None:
        dialog = FlowRolesDialog(flow.name, flow.roles, targets.devices, self._window)

        def chosen(assignment: dict[str, str]) -> None:
            self._spawn(self._run_with_roles(flow, assignment, targets), "Could not run the flow")

        dialog.roles_chosen.connect(chosen)
        dialog.open()

    async def _run_with_roles(self, flow: Flow, roles: dict[str, str], targets: Targets) -> None:
        runs = await self._backend.run_flow(flow, roles=roles)
        self._started(flow, runs, Targets(tuple(d for d in targets.devices if d.id in roles.values())))

    def _started(self, flow: Flow, runs: list[FlowRunInfo], targets: Targets) -> None:
        count = len(targets.devices)
        text = f"Running {flow.name} on {count} device{'s' if count != 1 else ''}"
        if targets.skipped:
            text += f"; skipped {targets.skipped_text()}"
        self.message.emit(text + ".", 8000)
        self.runs_started.emit(list(runs))

    # -- helpers ---------------------------------------------------------------

    def _selected_devices(self) -> list[DeviceInfo]:
        return [d for d in (self._devices.device(i) for i in self._selected_ids()) if d is not None]

    def _store_recent(self) -> None:
        self._settings.setValue(RECENT_FLOWS_KEY, self._recent.paths())
        self._rebuild_recent_menu()
        self.update_enabled()

    def _rebuild_recent_menu(self) -> None:
        menu = self._recent_menu
        menu.clear()
        for number, path in enumerate(self._recent.paths(), start=1):
            label = f"&{number} {Path(path).name}" if number < 10 else Path(path).name
            action = menu.addAction(label)
            action.setToolTip(path)
            action.setData(path)
            action.triggered.connect(lambda _checked=False, p=path: self.run_file(p))
        if self._recent.paths():
            menu.addSeparator()
            menu.addAction("Clear recent flows", self.clear_recent)
        else:
            menu.addAction("No recent flows").setEnabled(False)

    def _spawn(self, coro: Coroutine[Any, Any, Any], error_title: str) -> None:
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
                logger.error("%s", error_title, exc_info=exc)
            self.message.emit(f"{error_title}: {describe_error(exc)}", 10_000)
            box = QMessageBox(QMessageBox.Icon.Warning, error_title, describe_error(exc), parent=self._window)
            box.setObjectName("errorBox")
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

        task.add_done_callback(done)


def _stored_list(value: object) -> list[object]:
    """QSettings returns a str for a one-element list in some formats, a list otherwise."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    return []
