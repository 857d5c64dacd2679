"""Run flow… without a backend: selection in both places, the launcher, its dialogs.

Flows come from a fake loader and runs from a fake backend (expected values
written out); the window on real devices is ``test_flow_runs_real.py``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from app.dialogs.flow_problems import FlowProblemsDialog
from app.dialogs.flow_roles import FlowRolesDialog
from app.flow_plan import assignment_problem, default_assignment, split_targets
from app.models.devices import DeviceTableModel
from app.recent_files import RecentFiles
from app.widgets.device_selection import DeviceSelection
from app.widgets.flow_launcher import RECENT_FLOWS_KEY, FlowLauncher
from app.widgets.grid_view import GridView
from app.widgets.sidebar import Sidebar
from app.widgets.window_layout import pane_menu
from backend.api import FlowError, FlowProblem, FlowRunInfo, load_flow
from tests.gui.helpers import dispose_widget, evaluate
from tests.gui.snapshots import device, flow, run

PROBLEMS = [
    FlowProblem("flows/bad.yaml", 4, "tapOn", "unknown argument 'txt'"),
    FlowProblem("flows/bad.yaml", 9, None, "undefined variable ${USER}"),
]


class FakeFlows:
    """Records run_flow calls; answers with queued runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str] | None]] = []

    async def run_flow(
        self, flow: Any, *, devices: Any = (), roles: dict[str, str] | None = None
    ) -> list[FlowRunInfo]:
        self.calls.append((flow.name, list(devices), roles))
        if roles is not None:
            return [run(50, "queued", name=flow.name, devices=dict(roles))]
        return [run(40 + i, "queued", devices={"device": d}) for i, d in enumerate(devices)]


class Loader:
    """Returns *result* (or raises it) and remembers the thread it ran on."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.threads: list[threading.Thread] = []
        self.paths: list[Path] = []

    def __call__(self, path: Path, env: Any) -> Any:
        self.threads.append(threading.current_thread())
        self.paths.append(path)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@pytest.fixture
def devices(qapp, qt_owned):
    model = qt_owned(DeviceTableModel())
    model.reset_devices(
        [
            device("dev-a", name="browser-1"),
            device("dev-b", "booting", name="browser-2"),
            device("dev-c", name="browser-3"),
        ]
    )
    return model


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def parent(qt_owned):
    return qt_owned(QWidget())


def _launcher(devices, settings, parent, loader, selected, backend=None):
    return FlowLauncher(backend or FakeFlows(), devices, lambda: list(selected), loader, settings, parent)


# -- pure logic ------------------------------------------------------------------


def test_targets_are_the_ready_devices_of_the_flows_kind():
    chosen = split_targets(
        [device("a"), device("b", "booting"), device("c", kind="android"), device("d")], {"browser"}
    )
    assert [d.id for d in chosen.devices] == ["a", "d"]
    assert chosen.skipped_text() == "b (booting), c (not a browser device)"


def test_roles_get_distinct_devices_of_their_kind_in_order():
    roles = {"viewer": "browser", "scanner": "browser", "phone": "android"}
    pool = [device("a"), device("b"), device("c")]
    assert default_assignment(roles, pool) == {"viewer": "a", "scanner": "b"}
    assert assignment_problem(roles, {"viewer": "a", "scanner": "b"}, pool) == (
        "No selected ready device for phone (android): select more devices."
    )
    two = {"viewer": "browser", "scanner": "browser"}
    assert (
        assignment_problem(two, {"viewer": "a", "scanner": "a"}, pool)
        == "a cannot play both viewer and scanner."
    )
    assert assignment_problem(two, {"viewer": "a", "scanner": "c"}, pool) is None


def test_recent_files_are_newest_first_bounded_and_ignore_junk():
    recent = RecentFiles(["/a.yaml", 3, "", "/a.yaml", "/b.yaml"], limit=3)
    assert recent.paths() == ["/a.yaml", "/b.yaml"]
    recent.add("/c.yaml")
    recent.add("/b.yaml")
    recent.add("/d.yaml")
    assert recent.paths() == ["/d.yaml", "/b.yaml", "/c.yaml"]
    with pytest.raises(ValueError, match="limit must be at least 1, not 0"):
        RecentFiles(limit=0)


# -- dialogs ---------------------------------------------------------------------


def test_the_problems_dialog_lists_file_line_command_and_message(qtbot, parent):
    dialog = FlowProblemsDialog(Path("flows/bad.yaml"), PROBLEMS, parent)
    assert dialog.problems_text() == (
        "flows/bad.yaml:4: tapOn: unknown argument 'txt'\nflows/bad.yaml:9: undefined variable ${USER}"
    )
    assert "<b>bad.yaml</b> has 2 problems; nothing was run." in dialog.heading_text()


def test_the_roles_dialog_offers_devices_of_each_roles_kind_and_refuses_doubles(qtbot, parent):
    pool = [device("a", name="browser-1"), device("c", name="browser-3")]
    dialog = FlowRolesDialog("pair", {"viewer": "browser", "scanner": "browser"}, pool, parent)
    viewer, scanner = dialog.role_box("viewer"), dialog.role_box("scanner")
    assert [viewer.itemText(i) for i in range(viewer.count())] == ["—", "browser-1", "browser-3"]
    assert (viewer.currentText(), scanner.currentText()) == ("browser-1", "browser-3")
    assert dialog.run_button().isEnabled()

    scanner.setCurrentIndex(scanner.findText("browser-1"))
    assert not dialog.run_button().isEnabled()
    assert dialog.problem_text() == "browser-1 cannot play both viewer and scanner."

    scanner.setCurrentIndex(scanner.findText("browser-3"))
    with qtbot.waitSignal(dialog.roles_chosen) as chosen:
        dialog.run_button().click()
    assert chosen.args == [{"viewer": "a", "scanner": "c"}]


# -- the launcher ------------------------------------------------------------------


def test_a_flow_runs_on_the_selected_ready_devices_and_is_remembered(
    qtbot, qt_loop, devices, settings, parent
):
    backend = FakeFlows()
    loader = Loader(flow("login-check"))
    launcher = _launcher(devices, settings, parent, loader, ["dev-a", "dev-b", "dev-c"], backend)
    assert launcher.action().isEnabled()

    with (
        qtbot.waitSignal(launcher.runs_started, timeout=5000) as started,
        qtbot.waitSignal(launcher.message) as message,
    ):
        launcher.run_file("/flows/login-check.yaml")
    assert backend.calls == [("login-check", ["dev-a", "dev-c"], None)]
    assert [r.id for r in started.args[0]] == [40, 41]
    assert message.args == ["Running login-check on 2 devices; skipped browser-2 (booting).", 8000]
    # The file was read off the loop (the Qt thread).
    assert loader.paths == [Path("/flows/login-check.yaml")]
    assert loader.threads[0] is not threading.main_thread()

    assert launcher.recent_paths() == ["/flows/login-check.yaml"]
    assert settings.value(RECENT_FLOWS_KEY) == ["/flows/login-check.yaml"]
    texts = [a.text() for a in launcher.recent_menu().actions()]
    assert texts == ["&1 login-check.yaml", "", "Clear recent flows"]

    # A new launcher (the next session) finds it again; a recent entry runs the flow.
    again = _launcher(devices, settings, parent, loader, ["dev-c"], backend)
    assert again.recent_paths() == ["/flows/login-check.yaml"]
    with qtbot.waitSignal(again.runs_started, timeout=5000):
        again.recent_menu().actions()[0].trigger()
    assert backend.calls[-1] == ("login-check", ["dev-c"], None)


def test_run_flow_is_enabled_only_with_a_ready_device_selected(qtbot, devices, settings, parent):
    selected: list[str] = ["dev-b"]
    launcher = FlowLauncher(FakeFlows(), devices, lambda: selected, Loader(None), settings, parent)
    assert not launcher.action().isEnabled()
    selected.append("dev-a")
    launcher.update_enabled()
    assert launcher.action().isEnabled()
    devices.apply(device("dev-a", "busy", name="browser-1", updated_at=device("x").updated_at))
    launcher.update_enabled()
    assert not launcher.action().isEnabled()


def test_a_flow_with_problems_shows_them_and_runs_nothing(qtbot, qt_loop, devices, settings, parent):
    backend = FakeFlows()
    launcher = _launcher(devices, settings, parent, Loader(FlowError(PROBLEMS)), ["dev-a"], backend)

    launcher.run_file("/flows/bad.yaml")

    qtbot.waitUntil(lambda: parent.findChild(FlowProblemsDialog) is not None, timeout=5000)
    dialog = parent.findChild(FlowProblemsDialog)
    assert dialog.problems_text().splitlines() == [
        "flows/bad.yaml:4: tapOn: unknown argument 'txt'",
        "flows/bad.yaml:9: undefined variable ${USER}",
    ]
    qtbot.waitUntil(lambda: not launcher.is_busy())
    assert backend.calls == []
    dialog.close()


def test_a_flow_with_roles_asks_who_plays_each(qtbot, qt_loop, devices, settings, parent):
    backend = FakeFlows()
    pair = flow("pair", roles={"viewer": "browser", "scanner": "browser"})
    launcher = _launcher(devices, settings, parent, Loader(pair), ["dev-c", "dev-b", "dev-a"], backend)

    launcher.run_file("/flows/pair.yaml")
    qtbot.waitUntil(lambda: parent.findChild(FlowRolesDialog) is not None, timeout=5000)
    dialog = parent.findChild(FlowRolesDialog)
    # Selection order: browser-3 was selected first; browser-2 is booting and not offered.
    assert (dialog.role_box("viewer").currentText(), dialog.role_box("scanner").currentText()) == (
        "browser-3",
        "browser-1",
    )
    with qtbot.waitSignal(launcher.runs_started, timeout=5000):
        dialog.run_button().click()
    assert backend.calls == [("pair", [], {"viewer": "dev-c", "scanner": "dev-a"})]


def test_the_file_dialog_runs_the_chosen_file(qtbot, qt_loop, devices, settings, parent, tmp_path):
    path = tmp_path / "smoke.yml"
    path.write_text("url: about:blank\n---\n- takeScreenshot: x\n")
    backend = FakeFlows()
    loader = Loader(flow("smoke"))
    launcher = _launcher(devices, settings, parent, loader, ["dev-a"], backend)

    launcher.action().trigger()
    dialog = launcher.file_dialog()
    assert dialog is not None and dialog.isVisible()
    assert dialog.nameFilters() == ["Flow files (*.yaml *.yml)", "All files (*)"]
    with qtbot.waitSignal(launcher.runs_started, timeout=5000):
        dialog.selectFile(str(path))
        dialog.accept()
    assert loader.paths == [path]
    assert backend.calls == [("smoke", ["dev-a"], None)]
    assert launcher.file_dialog() is None


def test_no_ready_device_of_the_flows_kind_is_an_error_not_a_run(qtbot, qt_loop, devices, settings, parent):
    backend = FakeFlows()
    launcher = _launcher(devices, settings, parent, Loader(flow()), ["dev-b"], backend)
    with qtbot.waitSignal(launcher.message, timeout=5000) as message:
        launcher.run_file("/flows/login-check.yaml")
    assert message.args[0] == (
        "Could not run the flow: None of the selected devices can run login-check "
        "(browser-2 (booting)): select a ready device."
    )
    assert backend.calls == []


# -- one selection, two places -------------------------------------------------------


@pytest.fixture
def grid(qtbot):
    view = GridView()
    view.set_url_provider(lambda pane_id, scope: "ws://127.0.0.1:9/none")
    view.resize(900, 600)
    view.show()
    qtbot.waitUntil(view.is_ready, timeout=15_000)
    yield view
    dispose_widget(qtbot, view)


CLICK_HEADER = """
document.querySelector('.pane[data-id="%s"] .pane-header .name')
  .dispatchEvent(new MouseEvent('click', {bubbles: true, ctrlKey: %s}));
1
"""


def test_selecting_panes_selects_rows_and_the_other_way_round(qtbot, grid, devices, qt_owned):
    sidebar = qt_owned(Sidebar(devices))
    selection = DeviceSelection(sidebar, grid, sidebar)
    for pane_id in ("dev-a", "dev-c"):
        grid.add_pane(pane_id, devices.device(pane_id).name, "ready")

    def page_selected() -> list[str]:
        return sorted(evaluate(qtbot, grid, "corralGrid.selectedIds()"))

    with qtbot.waitSignal(selection.changed) as changed:
        evaluate(qtbot, grid, CLICK_HEADER % ("dev-a", "false"))
    assert changed.args == [["dev-a"]]
    assert sidebar.selected_ids() == ["dev-a"]
    with qtbot.waitSignal(selection.changed) as changed:
        evaluate(qtbot, grid, CLICK_HEADER % ("dev-c", "true"))
    assert sorted(changed.args[0]) == ["dev-a", "dev-c"]
    assert sorted(sidebar.selected_ids()) == ["dev-a", "dev-c"]
    assert page_selected() == ["dev-a", "dev-c"]
    # Ctrl-click again takes it away.
    with qtbot.waitSignal(selection.changed) as changed:
        evaluate(qtbot, grid, CLICK_HEADER % ("dev-a", "true"))
    assert changed.args == [["dev-c"]]
    assert page_selected() == ["dev-c"]

    # Rows select panes; a device without a pane is selected only in the sidebar.
    sidebar.select_devices(["dev-a", "dev-b"])
    assert grid.selected_panes() == ["dev-a"]
    qtbot.waitUntil(lambda: page_selected() == ["dev-a"])
    assert sorted(selection.ids()) == ["dev-a", "dev-b"]

    # A removed pane leaves the grid's selection; the rows stay selected.
    grid.remove_pane("dev-a")
    assert grid.selected_panes() == []
    assert sorted(selection.ids()) == ["dev-a", "dev-b"]


def test_a_broken_file_read_by_the_real_loader_lists_each_problem_with_its_line(
    qtbot, qt_loop, devices, settings, parent, tmp_path
):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "url: file:///opt/corral/start/test/login.html\n"
        "---\n"
        "- launchApp\n"
        "- tapOn:\n"
        "    txt: Log in\n"
        "- inputText: ${NOPE}\n"
        "- flyTo: moon\n"
    )
    backend = FakeFlows()
    launcher = _launcher(devices, settings, parent, load_flow, ["dev-a"], backend)

    launcher.run_file(str(path))

    qtbot.waitUntil(lambda: parent.findChild(FlowProblemsDialog) is not None, timeout=10_000)
    dialog = parent.findChild(FlowProblemsDialog)
    lines = dialog.problems_text().splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [
        [f"{path}:4:", "tapOn:"],
        [f"{path}:6:", "inputText:"],
        [f"{path}:7:", "flyTo:"],
    ]
    assert "txt" in lines[0] and "${NOPE}" in lines[1] and "unknown command" in lines[2]
    assert "<b>broken.yaml</b> has 3 problems; nothing was run." in dialog.heading_text()
    qtbot.waitUntil(lambda: not launcher.is_busy())
    assert backend.calls == []
    assert launcher.recent_paths() == [str(path)]  # kept: the operator fixes it and runs it again
    dialog.close()


def test_run_flow_is_offered_in_the_sidebar_and_pane_menus(qtbot, grid, devices, settings, parent, qt_owned):
    launcher = _launcher(devices, settings, parent, Loader(flow()), ["dev-a"])
    sidebar = qt_owned(Sidebar(devices))
    sidebar.set_menu_actions([launcher.action()])
    sidebar.show()
    sidebar.select_devices(["dev-a"])
    table = sidebar.table()
    table.customContextMenuRequested.emit(table.visualRect(table.model().index(0, 0)).center())
    menu = sidebar.findChild(QMenu)
    assert menu is not None
    assert [a.text() for a in menu.actions()][:3] == ["Run flow…", "", "Show in grid"]
    assert menu.actions()[0].isEnabled()
    menu.close()

    grid.add_pane("dev-a", "browser-1", "ready")
    actions = {
        "run-flow": launcher.action(),
        **{f"layout-{n}": QAction(str(n), parent) for n in (1, 2, 3, 4)},
    }
    removed: list[list[str]] = []
    pane = pane_menu(parent, grid, "dev-a", actions, removed.append)
    assert [a.text() for a in pane.actions()] == [
        "Run flow…",
        "",
        "Fill grid area",
        "Take control",
        "Reconnect stream",
        "",
        "Remove device…",
    ]
    pane.actions()[-1].trigger()
    assert removed == [["dev-a"]]
    empty = pane_menu(parent, grid, "", actions, removed.append)
    assert [a.text() for a in empty.actions()] == ["1", "2", "3", "4"]
