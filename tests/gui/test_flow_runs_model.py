"""The Flow runs panel without a backend: models, feed, panel and dock fed with fake snapshots.

Expected values are written out. The panel on real devices is ``test_flow_runs_real.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage

from app.flow_runs_feed import FlowRunsFeed
from app.models.devices import DeviceTableModel
from app.models.flow_runs import FlowRunTableModel, FlowStepTableModel, RunColumn, StepColumn, format_duration
from app.widgets.flow_runs_dock import FlowRunsDock
from app.widgets.flow_runs_panel import FlowRunsPanel
from app.widgets.grid_view import GridView
from backend.api import FlowRunInfo, FlowStepInfo
from tests.gui.helpers import dispose_widget
from tests.gui.snapshots import T0, device, run, step


@pytest.fixture
def devices(qapp, qt_owned):
    model = qt_owned(DeviceTableModel())
    model.reset_devices([device("dev-1", name="browser-1"), device("dev-2", name="browser-2")])
    return model


@pytest.fixture
def runs(devices, qt_owned):
    model = qt_owned(FlowRunTableModel(devices))
    model.set_clock(lambda: T0 + timedelta(seconds=75))
    return model


def _cells(model: Any, row: int, columns: Any) -> dict[Any, Any]:
    return {column: model.index(row, column).data() for column in columns}


def test_durations_read_naturally():
    assert [format_duration(s) for s in (0.4213, 12.34, 75, 3725)] == ["0.42 s", "12.3 s", "1m 15s", "1h 02m"]


def test_runs_show_every_column_newest_first(runs):
    runs.apply(
        run(
            1,
            "passed",
            steps_done=3,
            current_step="takeScreenshot login",
            finished_at=T0 + timedelta(seconds=4.5),
        )
    )
    runs.apply(
        run(
            3,
            "running",
            name="pair",
            devices={"viewer": "dev-1", "scanner": "dev-gone-123456"},
            steps_done=2,
            steps_total=5,
            current_step="scanner: readQr",
        )
    )
    runs.apply(run(2, "failed", steps_done=1, error='assertVisible "Welcome": not visible\nafter 10 s'))

    assert [r.id for r in runs.runs()] == [3, 2, 1]
    assert _cells(runs, 0, RunColumn) == {
        RunColumn.ID: "3",
        RunColumn.FLOW: "pair",
        RunColumn.DEVICES: "viewer: browser-1, scanner: dev-gone",
        RunColumn.STATE: "running",
        RunColumn.STEPS: "2/5",
        RunColumn.CURRENT: "scanner: readQr",
        RunColumn.ELAPSED: "1m 15s",
        RunColumn.ERROR: "",
    }
    failed = _cells(runs, 1, RunColumn)
    assert (failed[RunColumn.DEVICES], failed[RunColumn.ERROR]) == (
        "browser-2",
        'assertVisible "Welcome": not visible …',
    )
    # Escaped: device errors and flow labels are never rendered as markup.
    assert runs.index(1, RunColumn.ERROR).data(Qt.ItemDataRole.ToolTipRole) == (
        "<p style='white-space:pre-wrap'>assertVisible &quot;Welcome&quot;: not visible\nafter 10 s</p>"
    )
    passed = _cells(runs, 2, RunColumn)
    assert (passed[RunColumn.STATE], passed[RunColumn.STEPS], passed[RunColumn.ELAPSED]) == (
        "passed",
        "3/3",
        "4.50 s",
    )
    assert runs.index(0, RunColumn.STATE).data(Qt.ItemDataRole.ForegroundRole) == QColor("#58a6ff")
    assert runs.headerData(RunColumn.CURRENT, Qt.Orientation.Horizontal) == "Current step"


def test_a_listing_never_rolls_back_what_the_listener_brought(runs):
    runs.apply(run(5, "passed", steps_done=3))
    runs.reset_runs([run(6, "queued"), run(5, "running", steps_done=1), run(4, "failed")])
    assert [(r.id, r.state) for r in runs.runs()] == [(6, "queued"), (5, "passed"), (4, "failed")]


def test_the_runs_table_keeps_the_newest_up_to_its_limit(devices, qt_owned):
    model = qt_owned(FlowRunTableModel(devices, limit=2))
    for run_id in (1, 3, 2, 4):
        model.apply(run(run_id))
    assert [r.id for r in model.runs()] == [4, 3]
    model.apply(run(1))
    assert [r.id for r in model.runs()] == [4, 3]


def test_steps_show_every_column_and_thumbnails_load_off_the_loop(qtbot, qt_loop, qt_owned, tmp_path):
    shot = tmp_path / "shot.png"
    image = QImage(640, 360, QImage.Format.Format_RGB32)
    image.fill(QColor("#27ae60"))
    assert image.save(str(shot))
    model = qt_owned(FlowStepTableModel())
    model.reset_steps(
        9,
        [
            step(9, 1, label='openLink "http://page/login"', command="openLink", duration=1.25),
            step(
                9,
                2,
                "failed",
                label='tapOn text "Log in"',
                error="no element matches\ntext 'Log in'",
                duration=10.02,
            ),
            step(
                9, 3, "running", label="takeScreenshot login", command="takeScreenshot", screenshot=str(shot)
            ),
        ],
    )
    assert [_cells(model, row, StepColumn) for row in range(3)] == [
        {
            StepColumn.N: "1",
            StepColumn.ROLE: "device",
            StepColumn.LABEL: 'openLink "http://page/login"',
            StepColumn.STATE: "passed",
            StepColumn.DURATION: "1.25 s",
            StepColumn.ERROR: "",
            StepColumn.SCREENSHOT: "",
        },
        {
            StepColumn.N: "2",
            StepColumn.ROLE: "device",
            StepColumn.LABEL: 'tapOn text "Log in"',
            StepColumn.STATE: "failed",
            StepColumn.DURATION: "10.0 s",
            StepColumn.ERROR: "no element matches …",
            StepColumn.SCREENSHOT: "",
        },
        {
            StepColumn.N: "3",
            StepColumn.ROLE: "device",
            StepColumn.LABEL: "takeScreenshot login",
            StepColumn.STATE: "running",
            StepColumn.DURATION: "…",
            StepColumn.ERROR: "",
            StepColumn.SCREENSHOT: "",
        },
    ]
    decoration = Qt.ItemDataRole.DecorationRole
    qtbot.waitUntil(lambda: model.index(2, StepColumn.SCREENSHOT).data(decoration) is not None, timeout=5000)
    thumbnail = model.index(2, StepColumn.SCREENSHOT).data(decoration)
    assert thumbnail.size() == QSize(96, 54)
    assert thumbnail.pixelColor(48, 27) == QColor("#27ae60")
    assert model.index(0, StepColumn.SCREENSHOT).data(decoration) is None


class FakeRunsBackend:
    """Listener, listings and cancels of a backend, driven by the test."""

    def __init__(self, listed: list[FlowRunInfo] | None = None) -> None:
        self.listeners: list[Callable[[FlowRunInfo], None]] = []
        self.listed = listed or []
        self.steps: dict[int, list[FlowStepInfo]] = {}
        self.step_calls: list[int] = []
        self.cancelled: list[int] = []
        self.gate: asyncio.Event | None = None

    def add_flow_runs_listener(self, listener: Callable[[FlowRunInfo], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def notify(self, snapshot: FlowRunInfo) -> None:
        for listener in list(self.listeners):
            listener(snapshot)

    async def flow_runs(self, *, batch: str | None = None, limit: int = 200) -> list[FlowRunInfo]:
        return list(self.listed)

    async def flow_steps(self, run_id: int) -> list[FlowStepInfo]:
        self.step_calls.append(run_id)
        steps = list(self.steps.get(run_id, []))  # as the database had them when asked
        if self.gate is not None:
            await self.gate.wait()
        return steps

    async def cancel_flow_run(self, run_id: int) -> FlowRunInfo:
        self.cancelled.append(run_id)
        return run(run_id, "running")


def test_the_feed_lists_once_hands_on_changes_and_coalesces_step_listings(qtbot, qt_loop):
    backend = FakeRunsBackend(listed=[run(2), run(1, "passed")])
    got: dict[str, list[Any]] = {"runs": [], "run": [], "steps": []}
    feed = FlowRunsFeed(
        backend,
        got["runs"].append,
        got["run"].append,
        lambda run_id, steps: got["steps"].append((run_id, [s.seq for s in steps])),
        lambda exc: pytest.fail(f"unexpected error {exc}"),
    )
    feed.start()
    qtbot.waitUntil(lambda: got["runs"] != [], timeout=5000)
    assert [[r.id for r in listing] for listing in got["runs"]] == [[2, 1]]

    backend.steps[2] = [step(2, 1)]
    backend.gate = asyncio.Event()
    feed.watch(2)
    qtbot.waitUntil(lambda: backend.step_calls == [2], timeout=5000)
    for done in range(5):  # a burst while the first listing is in flight
        backend.notify(run(2, steps_done=done))
    backend.notify(run(1, "passed"))
    assert [r.steps_done for r in got["run"] if r.id == 2] == [0, 1, 2, 3, 4]
    backend.steps[2] = [step(2, 1), step(2, 2)]
    backend.gate.set()
    qtbot.waitUntil(lambda: len(got["steps"]) == 2, timeout=5000)
    assert got["steps"] == [(2, [1]), (2, [1, 2])]  # two listings for six changes
    assert feed.step_listings == 2
    feed.stop()
    assert backend.listeners == []


@pytest.fixture
def grid(qtbot):
    view = GridView()
    view.set_url_provider(lambda pane_id, scope: "ws://127.0.0.1:9/none")
    view.resize(800, 500)
    view.show()
    qtbot.waitUntil(view.is_ready, timeout=15_000)
    yield view
    dispose_widget(qtbot, view)


def test_the_dock_fills_the_panel_follows_the_selected_run_and_cancels(
    qtbot, qt_loop, devices, grid, tmp_path
):
    listed = [
        run(3, "running", devices={"device": "dev-3"}, steps_done=1, current_step="inputText alice"),
        run(1, "passed", devices={"device": "dev-1"}, steps_done=3),
    ]
    backend = FakeRunsBackend(listed=listed)
    parent = grid  # any widget: the dock only needs a parent
    dock = FlowRunsDock(backend, devices, grid, parent)
    grid.add_pane("dev-2", "browser-2", "ready")
    dock.start()
    qtbot.waitUntil(lambda: dock.runs_model().rowCount() == 2, timeout=5000)
    assert grid.pane_flow("dev-1") == ""  # a run that ended before the app started shows nothing
    # One still under way when the app started shows on its pane.
    assert json.loads(grid.pane_flow("dev-3")) == {
        "state": "running",
        "position": "2/3",
        "text": "inputText alice",
    }

    started = run(2, "queued", devices={"device": "dev-2"})
    dock.show_runs([started])
    panel: FlowRunsPanel = dock.panel()
    assert panel.selected_ids() == [2]
    assert panel.cancel_button().isEnabled()  # queued runs can be cancelled

    backend.steps[2] = [step(2, 1, "running", label='openLink "http://page/"', duration=None)]
    backend.notify(run(2, "running", devices={"device": "dev-2"}, current_step='openLink "http://page/"'))
    qtbot.waitUntil(lambda: dock.steps_model().rowCount() == 1, timeout=5000)
    assert json.loads(grid.pane_flow("dev-2")) == {
        "state": "running",
        "position": "1/3",
        "text": 'openLink "http://page/"',
    }
    assert panel.steps_title() == "Run 2: login-check on browser-2"
    assert dock.runs_model().index(1, RunColumn.STATE).data() == "running"
    assert [r.id for r in dock.runs_model().runs()] == [3, 2, 1]

    with qtbot.waitSignal(dock.message, timeout=5000) as message:
        panel.cancel_button().click()
    assert backend.cancelled == [2]
    assert message.args == ["Run 2 cancelled.", 5000]
    backend.notify(run(2, "cancelled", devices={"device": "dev-2"}, finished_at=T0))
    assert json.loads(grid.pane_flow("dev-2"))["state"] == "cancelled"
    assert not panel.cancel_button().isEnabled()
    assert panel.summary_text() == "3 runs  ·  1 running  ·  1 passed  ·  1 cancelled"

    # Double-clicking a step's screenshot asks for it larger.
    shot = tmp_path / "s.png"
    QImage(32, 32, QImage.Format.Format_RGB32).save(str(shot))
    dock.steps_model().reset_steps(2, [step(2, 1, screenshot=str(shot), label="takeScreenshot s")])
    table = panel.steps_table()
    with qtbot.waitSignal(panel.screenshot_requested) as requested:
        table.doubleClicked.emit(dock.steps_model().index(0, StepColumn.SCREENSHOT))
    assert requested.args == [str(shot), "Run 2, step 1: takeScreenshot s"]
    dock.stop()


def test_a_newer_listing_of_the_same_run_updates_rows_in_place(qtbot, qt_owned):
    model = qt_owned(FlowStepTableModel())
    model.reset_steps(4, [step(4, 1), step(4, 2, "running", duration=None)])
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))
    with qtbot.assertNotEmitted(model.modelReset), qtbot.waitSignal(model.dataChanged) as changed:
        model.reset_steps(4, [step(4, 1), step(4, 2), step(4, 3, "running", duration=None)])
    assert (changed.args[0].row(), changed.args[1].row()) == (1, 1)
    assert inserted == [(2, 2)]
    assert [model.index(row, StepColumn.STATE).data() for row in range(3)] == ["passed", "passed", "running"]
    # Another run replaces everything.
    with qtbot.waitSignal(model.modelReset):
        model.reset_steps(5, [step(5, 1)])
    assert model.run_id() == 5 and model.rowCount() == 1


def test_tooltips_show_markup_from_devices_as_text() -> None:
    from app.models.flow_runs import plain_tooltip

    assert plain_tooltip("<b>pwned</b> & <img src=x>") == (
        "<p style='white-space:pre-wrap'>&lt;b&gt;pwned&lt;/b&gt; &amp; &lt;img src=x&gt;</p>"
    )
