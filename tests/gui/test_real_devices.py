"""The vertical slice: the real window, a real Corral, real browser devices in Docker, real pixels."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QMessageBox, QPushButton

from app.models.jobs import JobColumn
from backend.api import Corral
from tests.gui.conftest import dark_theme, open_window
from tests.gui.helpers import (
    canvas_rects,
    close_to,
    dominant_colour,
    evaluate,
    run_async,
    save_screenshot,
    wait_for_colours,
)

pytestmark = pytest.mark.docker

COLOURS = ("#c0392b", "#27ae60", "#2980b9", "#8e44ad")
PRESSED = "#10d050"
"""What a device's page turns to when it receives the key "g"."""
SCREEN = "640x480x24"
BOOT_TIMEOUT = 120_000
DOUBLE_CLICK = """
document.querySelector('.pane[data-id="%s"] canvas')
  .dispatchEvent(new MouseEvent('dblclick', {bubbles: true, cancelable: true, detail: 2}));
1
"""

Rect = tuple[int, int, int, int]


def _start_url(colour: str) -> str:
    """A flat *colour* page that turns PRESSED on the key "g" (so input is visible in pixels)."""
    html = (
        f"<body style='margin:0;height:100vh;background:{colour};cursor:none'>"
        f"<script>addEventListener('keydown', e => {{ if (e.key === 'g') "
        f"document.body.style.background = '{PRESSED}'; }});</script></body>"
    )
    return "data:text/html;charset=utf-8," + urllib.parse.quote(html)


def _window_rects(qtbot: Any, window: Any) -> dict[str, Rect]:
    """Each visible pane's canvas, in window pixels."""
    offset = window.grid().mapTo(window, QPoint(0, 0))
    return {
        pane_id: (x + offset.x(), y + offset.y(), w, h)
        for pane_id, (x, y, w, h) in canvas_rects(qtbot, window.grid()).items()
    }


def _pane_colours(qtbot: Any, window: Any) -> dict[str, tuple[int, int, int]]:
    rects = _window_rects(qtbot, window)
    image = window.grab().toImage()  # the whole window: what the operator sees
    return {pane_id: dominant_colour(image, rect) for pane_id, rect in rects.items()}


def _wait_for_colours(qtbot: Any, window: Any, expected: dict[str, str], timeout: int = 30_000) -> None:
    wait_for_colours(qtbot, lambda: _pane_colours(qtbot, window), expected, timeout)


def _wait_until_ready(qtbot: Any, window: Any, device_ids: list[str]) -> None:
    def states() -> dict[str, str]:
        found = {i: window.model().device(i) for i in device_ids}
        return {i: d.state if d else "?" for i, d in found.items()}

    def done() -> bool:
        current = states()
        if "failed" in current.values():
            reasons = {i: window.model().device(i).reason for i, s in current.items() if s == "failed"}
            raise AssertionError(f"a device failed: {reasons}")
        return set(current.values()) == {"ready"}

    try:
        qtbot.waitUntil(done, timeout=BOOT_TIMEOUT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; devices are {states()}") from None


def test_four_real_devices_stream_into_the_grid_and_take_input(qtbot, window, corral, tmp_path, monkeypatch):
    grid = window.grid()
    expected: dict[str, str] = {}
    for colour in COLOURS:
        env = {"CORRAL_START_URL": _start_url(colour), "CORRAL_SCREEN": SCREEN}
        (device,) = run_async(qtbot, corral.provision("browser", 1, env=env))
        expected[device.id] = colour
    ids = list(expected)

    _wait_until_ready(qtbot, window, ids)
    qtbot.waitUntil(lambda: all(grid.is_connected(i) for i in ids), timeout=30_000)
    _wait_for_colours(qtbot, window, expected)

    # Four panes in a 2x2 grid, each showing its own device: not blank, all different.
    assert sorted(grid.pane_ids()) == sorted(ids)
    rects = _window_rects(qtbot, window)
    assert len({x for x, _, _, _ in rects.values()}) == 2
    assert len({y for _, y, _, _ in rects.values()}) == 2
    cell_width = max(w for _, _, w, _ in rects.values())
    reading_order = sorted(rects, key=lambda pane_id: (rects[pane_id][1], rects[pane_id][0]))
    names = [window.model().device(pane_id).name for pane_id in reading_order]
    assert names == sorted(names), "panes are not in name order"
    colours = list(_pane_colours(qtbot, window).values())
    assert all(not close_to(c, (7, 9, 11), 24) for c in colours)  # not the empty pane background
    assert all(not close_to(a, b, 40) for i, a in enumerate(colours) for b in colours[i + 1 :])
    assert window.status().counts_text() == "4 devices  ·  4 ready"
    save_screenshot(window, tmp_path, "real-devices-2x2.png")

    # Double-click a pane: it fills the grid area. Esc: back to 2x2.
    target, other = ids[2], ids[0]
    with qtbot.waitSignal(grid.focus_changed, timeout=5000) as focused:
        evaluate(qtbot, grid, DOUBLE_CLICK % target)
    assert focused.args == [target]
    qtbot.waitUntil(lambda: list(_window_rects(qtbot, window)) == [target])
    _wait_for_colours(qtbot, window, {target: expected[target]})
    assert _window_rects(qtbot, window)[target][2] > 1.6 * cell_width
    assert window.action("back").isEnabled()
    with qtbot.waitSignal(grid.focus_changed, timeout=5000) as back:
        qtbot.keyClick(grid.focusProxy(), Qt.Key.Key_Escape)
    assert back.args == [""]
    _wait_for_colours(qtbot, window, expected)

    # The layout actions change the grid.
    window.action("layout-3").trigger()
    qtbot.waitUntil(lambda: len({x for x, _, _, _ in _window_rects(qtbot, window).values()}) == 3)
    window.action("layout-2").trigger()
    qtbot.waitUntil(lambda: len({x for x, _, _, _ in _window_rects(qtbot, window).values()}) == 2)

    # Take control of one device: its pane reconnects with a control token, stops
    # being view-only, and keys reach the device.
    assert evaluate(qtbot, grid, f"corralGrid.viewOnly('{other}')") is True
    window.sidebar().select_device(other)
    window.action("control").trigger()
    assert grid.control_pane() == other
    qtbot.waitUntil(lambda: evaluate(qtbot, grid, f"corralGrid.viewOnly('{other}')") is False)
    qtbot.waitUntil(lambda: evaluate(qtbot, grid, f"corralGrid.connected('{other}')") is True, timeout=10_000)
    _wait_for_colours(qtbot, window, expected)
    x, y, w, h = canvas_rects(qtbot, grid)[other]
    qtbot.mouseClick(grid.focusProxy(), Qt.MouseButton.LeftButton, pos=QPoint(x + w // 2, y + h // 2))
    qtbot.keyClick(grid.focusProxy(), Qt.Key.Key_G)
    _wait_for_colours(qtbot, window, {**expected, other: PRESSED}, timeout=15_000)
    with qtbot.waitSignal(grid.control_changed, timeout=5000) as released:
        qtbot.keyClick(grid.focusProxy(), Qt.Key.Key_Escape)
    assert released.args == [other, False]
    assert evaluate(qtbot, grid, f"corralGrid.viewOnly('{other}')") is True

    # Remove all through the window: it asks first (Cancel keeps them), then removes.
    # Every removal the window asks for is recorded: the one after "Remove" must be
    # the only one, so the Cancel before it asked for none.
    removals: list[list[str]] = []
    real_remove = corral.remove

    async def recording_remove(device_ids: list[str]) -> None:
        removals.append(sorted(device_ids))
        await real_remove(device_ids)

    monkeypatch.setattr(corral, "remove", recording_remove)
    window.sidebar().table().selectAll()
    window.action("remove").trigger()
    box = window.findChild(QMessageBox, "confirmRemove")
    assert box is not None and box.text() == "Remove 4 devices?"
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert sorted(grid.pane_ids()) == sorted(ids)

    window.action("remove").trigger()
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "confirmRemove") is not None)
    box = window.findChild(QMessageBox, "confirmRemove")
    next(button for button in box.buttons() if button.text() == "Remove").click()
    qtbot.waitUntil(lambda: removals != [], timeout=10_000)
    assert removals == [sorted(ids)]
    qtbot.waitUntil(lambda: grid.pane_ids() == [], timeout=60_000)
    qtbot.waitUntil(lambda: window.model().rowCount() == 0, timeout=60_000)
    assert window.status().counts_text() == "No devices"
    assert evaluate(qtbot, grid, "corralGrid.paneIds().length") == 0
    # Removed devices leave the sidebar; their removal jobs are in the jobs panel.
    window.action("jobs").trigger()
    panel = window.jobs_panel()
    qtbot.waitUntil(
        lambda: sum(j.kind == "remove" and j.state == "succeeded" for j in panel.model().jobs()) == 4,
        timeout=30_000,
    )
    everything = run_async(qtbot, corral.devices(include_removed=True))
    assert {d.id: d.state for d in everything} == dict.fromkeys(ids, "removed")


@pytest.fixture
def corral_without_docker(qtbot, qt_loop, settings) -> Iterator[Corral]:
    """A real host Corral whose Docker daemon does not exist."""
    broken = settings.model_copy(update={"docker_host": "unix:///nonexistent.sock"})
    corral = run_async(qtbot, Corral.start(broken, role="host"), timeout=60_000)
    yield corral
    run_async(qtbot, corral.stop(), timeout=30_000)


def test_unreachable_docker_shows_the_banner_and_nothing_crashes(qtbot, corral_without_docker, tmp_path):
    corral = corral_without_docker
    with dark_theme(), open_window(qtbot, corral) as window:
        qtbot.waitUntil(window.banner().isVisible, timeout=15_000)
        assert "Devices cannot be provisioned or started." in window.banner().message()
        assert "systemctl start docker" in window.banner().message()
        assert window.status().docker_summary() == "unavailable"
        assert window.status().database_summary() == "ok"
        assert not window.action("add").isEnabled()

        # A request that arrives anyway (e.g. from the CLI) fails with the same readable reason.
        run_async(qtbot, corral.provision("browser", 1))
        window.action("jobs").trigger()
        panel = window.jobs_panel()
        qtbot.waitUntil(
            lambda: [(j.state, j.attempts) for j in panel.model().jobs()] == [("failed", 3)],
            timeout=30_000,
        )
        (job,) = panel.model().jobs()
        error = panel.model().index(panel.model().row_of(job.id), JobColumn.ERROR).data()
        assert error.startswith("Cannot reach the Docker daemon at unix:///nonexistent.sock.")

        # Checking again keeps the banner; nothing popped up, nothing crashed. The
        # check's result reaching the banner is the signal that it is over.
        shown: list[object] = []
        real_show = window.banner().show_health

        def recording_show(health: object) -> None:
            real_show(health)
            shown.append(health)

        window.banner().show_health = recording_show  # this window dies with the block
        with qtbot.waitSignal(window.banner().retry_requested, timeout=5000):
            window.banner().findChild(QPushButton).click()
        qtbot.waitUntil(lambda: shown != [], timeout=15_000)
        assert window.banner().isVisible()
        assert window.findChild(QMessageBox, "errorBox") is None
        assert window.isVisible()
        save_screenshot(window, tmp_path, "docker-unavailable.png")


def test_a_provision_without_docker_leaves_the_device_failed_with_the_reason(qtbot, corral_without_docker):
    corral = corral_without_docker
    with open_window(qtbot, corral) as window:
        (device,) = run_async(qtbot, corral.provision("browser", 1))
        (final,) = run_async(qtbot, corral.wait_for([device.id], {"failed"}, timeout=8), timeout=20_000)
        assert final.state == "failed"
        qtbot.waitUntil(lambda: window.model().device(device.id).state == "failed")
        assert "Cannot reach the Docker daemon" in (window.model().device(device.id).reason or "")


def test_a_failing_background_task_shows_in_the_status_bar(qtbot, corral_without_docker):
    # Without Docker the reconciler's pass fails each time: the status bar says so
    # (with the error in its tooltip) instead of the loop dying unseen.
    corral = corral_without_docker
    with open_window(qtbot, corral) as window:
        qtbot.waitUntil(lambda: window.status().background_summary() == "failing", timeout=15_000)
        details = window.status().background_details()
        assert details.startswith("Background: role: host; host: this process; reconciler: failing (")
        assert "Cannot reach the Docker daemon" in details
