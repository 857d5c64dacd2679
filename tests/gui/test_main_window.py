"""The whole window against an in-memory backend (real streams for live panes)."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.models.devices import Column
from app.widgets import main_window as main_window_module
from app.widgets.main_window import MainWindow
from backend.api import CorralError, Health
from tests.gui.fakes import FakeCorral, device
from tests.gui.helpers import canvas_rects, close_to, dispose_widget, dominant_colour, grab, hex_colour

DOCKER_DOWN = Health(
    False,
    "Cannot reach Docker at unix:///var/run/docker.sock. Start it: sudo systemctl start docker",
    True,
    "Postgres: connected",
)


@pytest.fixture
def fake(stream_farm: Any) -> FakeCorral:
    return FakeCorral(url_for=stream_farm.pane_url)


@pytest.fixture
def window(qtbot, qt_loop, fake, monkeypatch):
    monkeypatch.setattr(main_window_module, "HEALTH_INTERVAL_MS", 300)
    win = MainWindow(fake)
    win.resize(1440, 900)
    win.show()
    qtbot.waitUntil(win.grid().is_ready, timeout=15_000)
    yield win
    dispose_widget(qtbot, win)


def _start(qtbot, win):
    with qtbot.waitSignal(win.devices_loaded, timeout=5000):
        win.start()


def _names(win):
    model = win.model()
    return [model.data(model.index(row, Column.NAME)) for row in range(model.rowCount())]


def test_sidebar_lists_devices_and_live_ones_get_panes(qtbot, window, fake, xvnc_source, tmp_path):
    xvnc_source("dev-live", colour="#2980b9")
    fake.add(device("dev-live", "ready", name="checkout-1"))
    fake.add(device("dev-new", "provisioning", name="checkout-2", progress=0.3, progress_message="starting"))
    fake.add(device("dev-bad", "failed", name="checkout-3", reason="container exited: out of memory"))

    _start(qtbot, window)

    assert sorted(_names(window)) == ["checkout-1", "checkout-2", "checkout-3"]
    assert window.grid().pane_ids() == ["dev-live"]

    def live_pane_shows_its_device() -> bool:
        rects = canvas_rects(qtbot, window.grid())
        colour = dominant_colour(grab(window.grid()), rects["dev-live"]) if "dev-live" in rects else (0, 0, 0)
        return close_to(colour, hex_colour("#2980b9"))

    qtbot.waitUntil(live_pane_shows_its_device, timeout=20_000)
    grab(window).save(str(tmp_path / "main-window.png"))

    # A device that becomes ready gets a pane; one that stops loses it.
    fake.set_state("dev-new", "ready", progress=1.0)
    assert window.grid().pane_ids() == ["dev-live", "dev-new"]
    fake.set_state("dev-live", "stopping")
    assert window.grid().pane_ids() == ["dev-new"]
    assert window.status().counts_text() == "3 devices  ·  1 ready  ·  1 failed"


def test_failed_rows_explain_why(qtbot, window, fake):
    fake.add(
        device(
            "dev-bad", "failed", name="broken", reason="image corral/browser is missing: corral images build"
        )
    )
    _start(qtbot, window)

    model = window.model()
    assert (
        model.data(model.index(0, Column.DETAILS)) == "image corral/browser is missing: corral images build"
    )
    assert "Why: image corral/browser is missing" in model.data(
        model.index(0, Column.STATE), Qt.ItemDataRole.ToolTipRole
    )


def test_add_devices_dialog_shows_progress_per_device(qtbot, window, fake):
    _start(qtbot, window)
    window.action("add").trigger()
    dialog = window.add_devices_dialog()
    assert dialog is not None and dialog.isVisible()
    assert dialog.count_box().maximum() == 64
    dialog.count_box().setValue(3)

    dialog.add_button().click()
    qtbot.waitUntil(lambda: len(dialog.tracked_ids()) == 3)

    first, second, third = dialog.tracked_ids()
    fake.set_state(first, "provisioning", progress=0.5, progress_message="creating container")
    fake.set_state(second, "ready", progress=1.0)
    fake.set_state(third, "failed", reason="no space left on device")
    assert dialog.progress_of(first) == 500
    assert dialog.progress_of(second) == 1000
    assert len(_names(window)) == 3
    assert window.grid().pane_ids() == [second]


def test_add_devices_dialog_shows_backend_errors(qtbot, window, fake):
    _start(qtbot, window)
    window.open_add_devices()
    dialog = window.add_devices_dialog()
    fake.fail_next = CorralError("Docker is not running. Start it, then try again.")

    dialog.add_button().click()

    qtbot.waitUntil(lambda: dialog.error_text() != "")
    assert dialog.error_text() == "Docker is not running. Start it, then try again."
    assert dialog.add_button().isEnabled()
    assert dialog.tracked_ids() == []


def test_docker_unavailable_shows_a_banner_with_the_hint(qtbot, window, fake):
    fake.health_value = DOCKER_DOWN
    _start(qtbot, window)

    qtbot.waitUntil(lambda: window.banner().isVisible())
    assert "sudo systemctl start docker" in window.banner().message()
    assert window.status().docker_summary() == "unavailable"
    assert window.status().database_summary() == "ok"
    assert not window.action("add").isEnabled()

    # Health is polled on a timer; once Docker is back the banner goes.
    fake.health_value = Health(True, "Docker: connected", True, "Postgres: connected")
    qtbot.waitUntil(lambda: not window.banner().isVisible(), timeout=3000)
    assert window.action("add").isEnabled()
    assert fake.health_calls >= 2


def test_remove_asks_first_then_removes_device_and_pane(qtbot, window, fake):
    fake.add(device("dev-a", "ready", name="alpha"))
    fake.add(device("dev-b", "ready", name="beta"))
    _start(qtbot, window)
    window.sidebar().select_device("dev-a")
    assert window.sidebar().selected_ids() == ["dev-a"]

    window.action("remove").trigger()
    box = window.findChild(QMessageBox, "confirmRemove")
    assert box is not None and "alpha" in box.text()
    remove = next(b for b in box.buttons() if b.text() == "Remove")
    remove.click()

    qtbot.waitUntil(lambda: fake.removed == [["dev-a"]])
    assert _names(window) == ["beta"]
    assert window.grid().pane_ids() == ["dev-b"]


def test_cancel_keeps_the_device(qtbot, window, fake):
    fake.add(device("dev-a", "ready", name="alpha"))
    _start(qtbot, window)

    window.remove_devices(["dev-a"])
    box = window.findChild(QMessageBox, "confirmRemove")
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(50)

    assert fake.removed == []
    assert _names(window) == ["alpha"]


def test_backend_errors_are_shown_not_raised(qtbot, window, fake):
    fake.add(device("dev-a", "ready", name="alpha"))
    _start(qtbot, window)
    fake.fail_next = CorralError("The database is not reachable. Restart Corral.")

    window.remove_devices(["dev-a"])
    box = window.findChild(QMessageBox, "confirmRemove")
    next(b for b in box.buttons() if b.text() == "Remove").click()

    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None)
    assert (
        window.findChild(QMessageBox, "errorBox").text() == "The database is not reachable. Restart Corral."
    )


def test_layout_actions_and_escape(qtbot, window, fake):
    fake.add(device("dev-a", "ready", name="alpha"))
    _start(qtbot, window)

    window.action("layout-3").trigger()
    assert window.grid().layout_columns() == 3
    window.grid().focus_pane("dev-a")
    assert window.action("back").isEnabled()
    assert window.action("control").isEnabled()

    window.action("control").trigger()
    assert window.grid().control_pane() == "dev-a"
    window.action("back").trigger()
    assert window.grid().focused_pane() == ""
