"""Run flow… in the real window: a real Corral, two real browser devices, real pixels.

The operator selects both panes, runs ``tests/fixtures/flows/gui-steps.yaml``
through the toolbar action and the file dialog, watches both panes show the
step being run, and reads every step's result in the Flow runs panel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, QSize, Qt

from app.dialogs.flow_roles import FlowRolesDialog
from app.dialogs.screenshot import ScreenshotDialog
from app.models.flow_runs import RunColumn, StepColumn
from tests.gui.helpers import close_to, evaluate, hex_colour, run_async, save_screenshot

pytestmark = pytest.mark.docker

FLOW = Path(__file__).resolve().parents[1] / "fixtures" / "flows" / "gui-steps.yaml"
HOLD = "hold for the screenshot"
RUNNING = "#58a6ff"
BOOT_TIMEOUT = 120_000
RUN_TIMEOUT = 90_000
CLICK_HEADER = """
document.querySelector('.pane[data-id="%s"] .pane-header .name')
  .dispatchEvent(new MouseEvent('click', {bubbles: true, ctrlKey: %s}));
1
"""
PANE_RECT = """
(() => { const r = document.querySelector('.pane[data-id="%s"]').getBoundingClientRect();
  return [r.x, r.y, r.width, r.height].map(Math.round); })()
"""


def _flow(qtbot: Any, window: Any, pane_id: str) -> dict[str, Any]:
    return evaluate(qtbot, window.grid(), f"corralGrid.flow('{pane_id}')") or {}


def _colour_share(image: Any, rect: list[int], offset: QPoint, colour: str) -> float:
    """The share of the middle row of *rect* (page pixels) that shows *colour*."""
    x, y, w, h = rect
    wanted = hex_colour(colour)
    row = offset.y() + y + h // 2
    samples = [image.pixelColor(offset.x() + px, row) for px in range(x + 2, x + w - 2, 3)]
    hits = sum(close_to((c.red(), c.green(), c.blue()), wanted, 12) for c in samples)
    return hits / max(1, len(samples))


def _wait_ready_and_streaming(qtbot: Any, window: Any, ids: list[str]) -> None:
    def ready() -> bool:
        states = {i: getattr(window.model().device(i), "state", "?") for i in ids}
        assert "failed" not in states.values(), f"a device failed: {states}"
        return set(states.values()) == {"ready"}

    qtbot.waitUntil(ready, timeout=BOOT_TIMEOUT)
    qtbot.waitUntil(lambda: all(window.grid().is_connected(i) for i in ids), timeout=30_000)


def test_run_flow_on_two_selected_panes_shows_steps_on_both_and_fills_the_panel(
    qtbot, window, corral, tmp_path
):
    devices = run_async(qtbot, corral.provision("browser", 2), timeout=30_000)
    ids = [device.id for device in devices]
    _wait_ready_and_streaming(qtbot, window, ids)
    grid = window.grid()
    assert not window.action("run-flow").isEnabled()

    # Select both panes on the grid: a click, then a Ctrl-click on their headers.
    evaluate(qtbot, grid, CLICK_HEADER % (ids[0], "false"))
    evaluate(qtbot, grid, CLICK_HEADER % (ids[1], "true"))
    qtbot.waitUntil(lambda: sorted(window.sidebar().selected_ids()) == sorted(ids))
    assert sorted(evaluate(qtbot, grid, "corralGrid.selectedIds()")) == sorted(ids)
    assert window.action("run-flow").isEnabled()

    # Every overlay the panes are given, in order (what the page is told to draw).
    told: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    real_set = grid.set_pane_flow

    def recording_set(pane_id: str, overlay: str) -> None:
        if overlay and pane_id in told:
            told[pane_id].append(json.loads(overlay))
        real_set(pane_id, overlay)

    grid.set_pane_flow = recording_set  # this window dies with the test

    # Run flow…: the file dialog, then the file.
    window.action("run-flow").trigger()
    dialog = window.launcher().file_dialog()
    assert dialog is not None
    dialog.selectFile(str(FLOW))
    dialog.accept()

    dock = window.runs_dock()
    runs = dock.runs_model()
    qtbot.waitUntil(lambda: runs.rowCount() == 2, timeout=30_000)
    assert dock.isVisible()
    run_ids = {run.devices["device"]: run.id for run in runs.runs()}
    assert sorted(run_ids) == sorted(ids)
    assert window.launcher().recent_paths() == [str(FLOW)]

    # Both panes show the slow step, in the running colour, inside their own rectangle.
    offset = grid.mapTo(window, QPoint(0, 0))

    def holding_on_both() -> bool:
        flows = {i: _flow(qtbot, window, i) for i in ids}
        if not all(f.get("shown") and f.get("text") == HOLD for f in flows.values()):
            return False
        image = window.grab().toImage()
        return all(_colour_share(image, flows[i]["rect"], offset, RUNNING) > 0.5 for i in ids)

    qtbot.waitUntil(holding_on_both, timeout=RUN_TIMEOUT)
    for pane_id in ids:
        flow = _flow(qtbot, window, pane_id)
        assert (flow["state"], flow["position"]) == ("running", "4/7")
        pane = evaluate(qtbot, grid, PANE_RECT % pane_id)
        x, y, w, h = flow["rect"]
        assert pane[0] <= x and x + w <= pane[0] + pane[2] and pane[1] <= y and y + h <= pane[1] + pane[3]
    save_screenshot(window, tmp_path, "flow-running.png")

    # Both runs pass; the panes say so.
    def passed() -> bool:
        states = {run.id: run.state for run in runs.runs()}
        assert "failed" not in states.values(), [run.error for run in runs.runs()]
        return set(states.values()) == {"passed"}

    qtbot.waitUntil(passed, timeout=RUN_TIMEOUT)
    for pane_id in ids:
        qtbot.waitUntil(lambda p=pane_id: _flow(qtbot, window, p).get("state") == "passed", timeout=5000)
        flow = _flow(qtbot, window, pane_id)
        assert (flow["position"], flow["text"]) == ("7/7", "gui-steps: passed")
        # What the pane was told: the step changed as the run went on, then the verdict.
        texts = [overlay["text"] for overlay in told[pane_id]]
        assert HOLD in texts
        assert texts[-1] == "gui-steps: passed"
        assert len(set(texts)) >= 4, texts
        positions = [overlay["position"] for overlay in told[pane_id] if overlay["state"] == "running"]
        assert positions == sorted(positions, key=lambda p: int(p.split("/")[0])), positions

    # The panel: both rows passed, 7/7; the selected run's steps all passed with durations.
    for row in range(2):
        cells = {c: runs.index(row, c).data() for c in (RunColumn.FLOW, RunColumn.STATE, RunColumn.STEPS)}
        assert cells == {RunColumn.FLOW: "gui-steps", RunColumn.STATE: "passed", RunColumn.STEPS: "7/7"}
    panel = dock.panel()
    first = run_ids[ids[0]]
    panel.select_run(first)
    steps = dock.steps_model()

    def all_listed() -> bool:
        # The steps follow the run's notifications: the last listing may still be on its way.
        listed = [step.state for step in steps.steps()]
        return steps.run_id() == first and listed == ["passed"] * 7

    qtbot.waitUntil(all_listed, timeout=10_000)
    rows = [steps.step(row) for row in range(7)]
    assert all(step.duration is not None and step.duration > 0 for step in rows)
    assert [steps.index(row, StepColumn.N).data() for row in range(7)] == [str(n) for n in range(1, 8)]
    held = rows[3]
    assert (held.label, held.command) == (HOLD, "evalScript")
    assert held.duration is not None and held.duration >= 5.5
    assert steps.index(3, StepColumn.DURATION).data().endswith(" s")
    shot = rows[6]
    assert shot.command == "takeScreenshot" and shot.screenshot is not None
    qtbot.waitUntil(lambda: steps.thumbnail(shot.screenshot) is not None, timeout=10_000)
    assert panel.steps_title() == f"Run {first}: gui-steps on {window.model().device(ids[0]).name}"
    save_screenshot(window, tmp_path, "flow-runs-panel.png")

    # Double-click the thumbnail: the screenshot opens at the device's screen size.
    table = panel.steps_table()
    thumbnail = steps.index(6, StepColumn.SCREENSHOT)
    table.scrollTo(thumbnail)
    cell = table.visualRect(thumbnail).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    qtbot.waitUntil(lambda: dock.findChild(ScreenshotDialog) is not None, timeout=5000)
    viewer = dock.findChild(ScreenshotDialog)
    qtbot.waitUntil(viewer.loaded, timeout=10_000)
    assert viewer.image_size() == QSize(shot.data["width"], shot.data["height"])
    assert viewer.image_size().width() >= 640
    viewer.close()

    # Run it again on one device and cancel it from the panel while it holds.
    window.selection().select([ids[1]])
    window.launcher().run_file(str(FLOW))
    qtbot.waitUntil(lambda: runs.rowCount() == 3, timeout=30_000)
    (again,) = [run for run in runs.runs() if run.id not in run_ids.values()]
    assert again.devices == {"device": ids[1]}
    qtbot.waitUntil(lambda: _flow(qtbot, window, ids[1]).get("text") == HOLD, timeout=RUN_TIMEOUT)
    panel.select_run(again.id)
    assert panel.cancel_button().isEnabled()
    qtbot.mouseClick(panel.cancel_button(), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: runs.run(again.id).state == "cancelled", timeout=30_000)
    qtbot.waitUntil(lambda: _flow(qtbot, window, ids[1]).get("state") == "cancelled", timeout=5000)
    assert _flow(qtbot, window, ids[1])["text"] == "gui-steps: cancelled"
    assert not panel.cancel_button().isEnabled()
    # The device stays usable: it is still ready and streaming.
    assert window.model().device(ids[1]).state == "ready"


PAIR = Path(__file__).resolve().parents[2] / "examples" / "flows" / "pair.yaml"


def test_a_flow_with_roles_asks_who_plays_each_and_runs_once_on_both(qtbot, window, corral):
    devices = run_async(qtbot, corral.provision("browser", 2), timeout=30_000)
    ids = [device.id for device in devices]
    _wait_ready_and_streaming(qtbot, window, ids)
    names = {i: window.model().device(i).name for i in ids}
    window.sidebar().select_devices(ids)
    qtbot.waitUntil(lambda: sorted(window.grid().selected_panes()) == sorted(ids))

    window.launcher().run_file(str(PAIR))
    qtbot.waitUntil(lambda: window.findChild(FlowRolesDialog) is not None, timeout=15_000)
    dialog = window.findChild(FlowRolesDialog)
    viewer, scanner = dialog.role_box("viewer"), dialog.role_box("scanner")
    # The sidebar lists devices by name, so the first selected is the first by name.
    first, second = sorted(ids, key=lambda i: names[i])
    assert (viewer.currentText(), scanner.currentText()) == (names[first], names[second])
    # Swap them: the second device shows the code, the first reads it.
    viewer.setCurrentIndex(viewer.findText(names[second]))
    assert not dialog.run_button().isEnabled()
    scanner.setCurrentIndex(scanner.findText(names[first]))
    assert dialog.run_button().isEnabled()
    dialog.run_button().click()

    runs = window.runs_dock().runs_model()
    qtbot.waitUntil(lambda: runs.rowCount() == 1, timeout=30_000)
    (run,) = runs.runs()
    assert run.devices == {"viewer": second, "scanner": first}
    assert runs.index(0, RunColumn.DEVICES).data() == f"viewer: {names[second]}, scanner: {names[first]}"

    def ended() -> bool:
        current = runs.run(run.id)
        assert current.state != "failed", current.error
        return current.state == "passed"

    qtbot.waitUntil(ended, timeout=RUN_TIMEOUT)
    # One run, shown on both of its devices' panes.
    for pane_id in ids:
        qtbot.waitUntil(lambda p=pane_id: _flow(qtbot, window, p).get("state") == "passed", timeout=5000)
        assert _flow(qtbot, window, pane_id)["text"] == "Pair by QR code: passed"
    steps = window.runs_dock().steps_model()
    window.runs_dock().panel().select_run(run.id)
    qtbot.waitUntil(
        lambda: steps.run_id() == run.id and [s.state for s in steps.steps()] == ["passed"] * 5,
        timeout=10_000,
    )
    assert [(s.role, s.command) for s in steps.steps()] == [
        ("viewer", "openLink"),
        ("scanner", "readQr"),
        ("scanner", "openLink"),
        ("scanner", "assertVisible"),
        ("scanner", "takeScreenshot"),
    ]
    assert not window.runs_dock().panel().steps_table().isColumnHidden(StepColumn.ROLE)
