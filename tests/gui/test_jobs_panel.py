"""The jobs panel in the real window, on a real backend: Postgres jobs, Docker devices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.models.devices import Column
from app.models.jobs import JobColumn
from backend.api import JobInfo
from tests.gui.helpers import run_async, save_screenshot

pytestmark = pytest.mark.docker

BOOT_TIMEOUT = 90_000


def _show_jobs(qtbot: Any, window: Any) -> Any:
    window.action("jobs").trigger()
    qtbot.waitUntil(window.jobs_dock().isVisible)
    return window.jobs_panel()


def _wait_for_job(qtbot: Any, panel: Any, match: Callable[[JobInfo], bool], timeout: int = 30_000) -> JobInfo:
    """Wait until the panel's model shows a job that *match*es (the model follows the listener)."""
    found: list[JobInfo] = []

    def shown() -> bool:
        found[:] = [job for job in panel.model().jobs() if match(job)]
        return bool(found)

    try:
        qtbot.waitUntil(shown, timeout=timeout)
    except AssertionError:
        rows = [(j.id, j.kind, j.state, j.attempts, j.error) for j in panel.model().jobs()]
        raise AssertionError(f"no such job in the panel; it shows {rows}") from None
    return found[0]


def _cells(panel: Any, job_id: int, role: int = Qt.ItemDataRole.DisplayRole) -> dict[JobColumn, Any]:
    model = panel.model()
    row = model.row_of(job_id)
    assert row >= 0, f"job {job_id} is not in the panel"
    return {column: model.data(model.index(row, column), role) for column in JobColumn}


def _click(qtbot: Any, button: Any) -> None:
    assert button.isEnabled(), f"{button.text()} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_a_failing_provision_shows_attempts_and_error_and_retry_and_cancel_act(
    qtbot, window, corral, tmp_path
):
    panel = _show_jobs(qtbot, window)
    (device,) = run_async(qtbot, corral.provision("browser", 1, env={"CORRAL_SCREEN": "bad"}))

    job = _wait_for_job(qtbot, panel, lambda j: j.device_id == device.id)
    assert job.kind == "provision"
    failed = _wait_for_job(qtbot, panel, lambda j: j.id == job.id and j.state == "failed", BOOT_TIMEOUT)

    cells = _cells(panel, job.id)
    assert cells[JobColumn.KIND] == "provision"
    assert cells[JobColumn.DEVICE] == device.name
    assert cells[JobColumn.STATE] == "failed"
    assert cells[JobColumn.ATTEMPT] == "3/3"
    assert "CORRAL_SCREEN must look like 1024x768x24, got 'bad'" in cells[JobColumn.ERROR]
    assert failed.error is not None
    assert _cells(panel, job.id, Qt.ItemDataRole.ToolTipRole)[JobColumn.ERROR] == failed.error
    # The device's own row says the same.
    window.sidebar().filter_box().setText(device.name)
    sidebar = window.sidebar().table().model()
    assert "CORRAL_SCREEN must look like" in sidebar.index(0, Column.DETAILS).data()

    panel.select_job(job.id)
    assert panel.retry_button().isEnabled()
    assert not panel.cancel_button().isEnabled()

    # Retry: the job is queued again with fresh attempts; the change arrives through the listener.
    _click(qtbot, panel.retry_button())
    _wait_for_job(qtbot, panel, lambda j: j.id == job.id and j.state in ("queued", "running"))
    assert panel.selected_ids() == [job.id]  # the refresh kept the selection
    assert not panel.retry_button().isEnabled()

    # Cancel it: whatever the attempt was doing, it ends cancelled and the device failed with the reason.
    _click(qtbot, panel.cancel_button())
    cancelled = _wait_for_job(qtbot, panel, lambda j: j.id == job.id and j.state == "cancelled", 60_000)
    assert cancelled.attempts < 3
    qtbot.waitUntil(lambda: window.model().device(device.id).reason == "provisioning cancelled")
    assert panel.retry_button().isEnabled()
    assert not panel.cancel_button().isEnabled()
    assert window.status().currentMessage().startswith(f"Job {job.id} cancelled")

    # A request the backend refuses (the job is no longer running) is shown, not raised.
    panel.cancel_requested.emit([job.id])
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None)
    box = window.findChild(QMessageBox, "errorBox")
    assert box.text() == f"job {job.id} was cancelled; only queued or running jobs can be cancelled"
    assert box.text() in window.status().currentMessage()
    box.close()
    save_screenshot(window, tmp_path, "jobs-panel-failed.png")


def test_provisioning_and_removal_show_progress_and_device_names(qtbot, window, corral, tmp_path):
    panel = _show_jobs(qtbot, window)
    progress_seen: list[tuple[float, str]] = []

    def note_progress() -> None:
        for job in panel.model().jobs():
            if job.state == "running" and 0 < job.progress < 1:
                progress_seen.append((job.progress, job.progress_message))

    panel.model().jobs_changed.connect(note_progress)

    # Through the app's own dialog, which calls Corral.provision.
    window.action("add").trigger()
    dialog = window.add_devices_dialog()
    _click(qtbot, dialog.add_button())
    qtbot.waitUntil(lambda: len(dialog.tracked_ids()) == 1, timeout=10_000)
    (device_id,) = dialog.tracked_ids()
    name = window.model().device(device_id).name

    job = _wait_for_job(qtbot, panel, lambda j: j.device_id == device_id)
    assert _cells(panel, job.id)[JobColumn.DEVICE] == name
    _wait_for_job(qtbot, panel, lambda j: j.id == job.id and j.state == "succeeded", BOOT_TIMEOUT)
    cells = _cells(panel, job.id)
    assert (cells[JobColumn.STATE], cells[JobColumn.ATTEMPT], cells[JobColumn.PROGRESS]) == (
        "succeeded",
        "1/3",
        "100%",
    )
    assert progress_seen, "no running job with partial progress was ever shown"
    assert any(message for _, message in progress_seen)
    qtbot.waitUntil(lambda: dialog.progress_of(device_id) == 1000, timeout=10_000)
    assert window.grid().has_pane(device_id)
    dialog.close()

    # The state filter lists from the backend.
    panel.set_state_filter("failed")
    qtbot.waitUntil(lambda: panel.model().rowCount() == 0)
    assert panel.summary_text() == "No jobs in this state"
    panel.set_state_filter("succeeded")
    qtbot.waitUntil(lambda: [j.id for j in panel.model().jobs()] == [job.id])
    panel.set_state_filter("all")

    # Removal is a job too; it keeps the device's name after the device left the sidebar.
    run_async(qtbot, corral.remove([device_id]))
    removal = _wait_for_job(qtbot, panel, lambda j: j.kind == "remove" and j.device_id == device_id)
    _wait_for_job(qtbot, panel, lambda j: j.id == removal.id and j.state == "succeeded", 60_000)
    qtbot.waitUntil(lambda: window.model().device(device_id) is None)
    assert not window.grid().has_pane(device_id)
    assert _cells(panel, removal.id)[JobColumn.DEVICE] == name
    assert [j.id for j in panel.model().jobs()] == [removal.id, job.id]
    assert panel.summary_text() == "2 jobs"
    save_screenshot(window, tmp_path, "jobs-panel.png")


def test_the_panel_lists_only_while_shown(qtbot, window, corral):
    feed = window.jobs_feed()
    assert not window.jobs_dock().isVisible()
    # Job listeners are called in the order they subscribed: once this one (after
    # the feed's) has seen the provision's changes, so has the feed.
    changes: list[None] = []
    unsubscribe = corral.add_jobs_listener(lambda: changes.append(None))
    try:
        run_async(qtbot, corral.provision("browser", 1, env={"CORRAL_SCREEN": "bad"}))
        qtbot.waitUntil(lambda: len(changes) >= 1, timeout=10_000)
    finally:
        unsubscribe()
    assert feed.listings == 0

    panel = _show_jobs(qtbot, window)
    _wait_for_job(qtbot, panel, lambda j: j.kind == "provision")
    assert feed.listings >= 1
