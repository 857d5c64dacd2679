"""Flow overlays on panes: what a run's snapshots show, and the page drawing it (real pixels)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.pane_overlays import Overlay, PaneOverlays, overlay_for
from app.widgets.grid_view import GridView
from tests.gui.helpers import close_to, dispose_widget, evaluate, grab, hex_colour
from tests.gui.snapshots import T0, run

RUNNING = "#58a6ff"
PASSED = "#3fb950"
FAILED = "#f85149"


def test_each_state_reads_as_step_position_and_text():
    assert overlay_for(run(1, "queued")) == Overlay(1, "queued", "0/3", "login-check: waiting for the device")
    assert overlay_for(run(1, "running")) == Overlay(1, "running", "1/3", "login-check: starting")
    assert overlay_for(run(1, "running", steps_done=1, current_step='tapOn text "Log in"')) == Overlay(
        1, "running", "2/3", 'tapOn text "Log in"'
    )
    assert overlay_for(run(1, "passed", steps_done=3, finished_at=T0)) == Overlay(
        1, "passed", "3/3", "login-check: passed"
    )
    failed = run(1, "failed", steps_done=1, error='assertVisible "Welcome": not visible after 10 s\nmore')
    assert overlay_for(failed) == Overlay(
        1, "failed", "1/3", 'login-check: failed: assertVisible "Welcome": not visible after 10 s'
    )
    assert overlay_for(run(1, "cancelled", steps_done=2)).text == "login-check: cancelled"
    assert json.loads(overlay_for(run(1, "running")).to_json()) == {
        "state": "running",
        "position": "1/3",
        "text": "login-check: starting",
    }


def test_a_finished_run_lingers_then_clears_and_newer_runs_win(qtbot, qt_loop):
    shown: list[tuple[str, str | None]] = []
    overlays = PaneOverlays(lambda device_id, o: shown.append((device_id, o and o.position)), linger=0.2)
    pair = {"viewer": "dev-a", "scanner": "dev-b"}

    overlays.apply(run(7, "running", devices=pair, steps_done=0, current_step="viewer: openLink"))
    overlays.apply(run(7, "running", devices=pair, steps_done=0, current_step="viewer: openLink"))
    assert shown == [("dev-a", "1/3"), ("dev-b", "1/3")]  # a repeated snapshot changes nothing

    overlays.apply(run(7, "passed", devices=pair, steps_done=3))
    assert shown[2:] == [("dev-a", "3/3"), ("dev-b", "3/3")]
    # A newer run on dev-b takes its pane; the older run's clearing leaves it alone.
    overlays.apply(run(8, "running", devices={"device": "dev-b"}))
    overlays.apply(run(7, "passed", devices=pair, steps_done=3))  # a late duplicate: ignored
    qtbot.waitUntil(lambda: overlays.overlay("dev-a") is None, timeout=5000)
    assert shown[4:] == [("dev-b", "1/3"), ("dev-a", None)]
    assert overlays.overlay("dev-b") == Overlay(8, "running", "1/3", "login-check: starting")
    overlays.stop()


@pytest.fixture
def grid(qtbot):
    view = GridView()
    view.set_url_provider(lambda pane_id, scope: "ws://127.0.0.1:9/none")
    view.resize(900, 600)
    view.show()
    qtbot.waitUntil(view.is_ready, timeout=15_000)
    yield view
    dispose_widget(qtbot, view)


def _flow(qtbot: Any, grid: Any, pane_id: str) -> dict[str, Any]:
    return evaluate(qtbot, grid, f"corralGrid.flow('{pane_id}')")


def _colour_in(image: Any, rect: list[int], colour: str) -> bool:
    """Whether the middle row of *rect* (page pixels) shows *colour*, away from any text."""
    x, y, w, h = rect
    wanted = hex_colour(colour)
    row = y + h // 2
    hits = 0
    for px in range(x + 2, x + w - 2, 3):
        c = image.pixelColor(px, row)
        hits += close_to((c.red(), c.green(), c.blue()), wanted, 10)
    return hits >= 20


def test_the_page_draws_the_overlay_in_the_state_colour_and_fades_it(qtbot, grid):
    grid.add_pane("dev-a", "browser-1", "ready")
    grid.add_pane("dev-b", "browser-2", "ready")
    running = overlay_for(run(1, "running", steps_done=1, current_step='tapOn text "Log in"'))
    grid.set_pane_flow("dev-a", running.to_json())

    qtbot.waitUntil(lambda: (_flow(qtbot, grid, "dev-a") or {}).get("shown") is True, timeout=5000)
    flow = _flow(qtbot, grid, "dev-a")
    assert (flow["state"], flow["position"], flow["text"]) == ("running", "2/3", 'tapOn text "Log in"')
    assert _flow(qtbot, grid, "dev-b")["shown"] is False
    pane = evaluate(
        qtbot,
        grid,
        "(() => { const r = document.querySelector('.pane[data-id=\"dev-a\"]')"
        ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height].map(Math.round); })()",
    )
    # The bar lies inside its pane, along the bottom.
    x, y, w, h = flow["rect"]
    assert pane[0] <= x and x + w <= pane[0] + pane[2] and pane[1] <= y and y + h <= pane[1] + pane[3]
    assert pane[1] + pane[3] - (y + h) <= 2
    qtbot.waitUntil(lambda: _colour_in(grab(grid), flow["rect"], RUNNING), timeout=5000)
    other = _flow(qtbot, grid, "dev-b")["rect"]
    assert not _colour_in(grab(grid), other, RUNNING)

    failed = overlay_for(run(1, "failed", steps_done=1, error="tapOn: no element matches"))
    grid.set_pane_flow("dev-a", failed.to_json())
    qtbot.waitUntil(lambda: _colour_in(grab(grid), flow["rect"], FAILED), timeout=5000)
    assert _flow(qtbot, grid, "dev-a")["text"] == "login-check: failed: tapOn: no element matches"

    # Cleared: it fades out, and a reloaded page shows nothing either.
    grid.set_pane_flow("dev-a", "")
    assert grid.pane_flow("dev-a") == ""
    qtbot.waitUntil(lambda: not _colour_in(grab(grid), flow["rect"], FAILED), timeout=5000)
    assert _flow(qtbot, grid, "dev-a")["shown"] is False


def test_an_overlay_set_before_the_pane_exists_or_the_page_reloads_is_shown(qtbot, grid):
    passed = overlay_for(run(2, "passed", steps_done=3)).to_json()
    grid.set_pane_flow("dev-c", passed)
    grid.add_pane("dev-c", "browser-3", "ready")
    qtbot.waitUntil(lambda: (_flow(qtbot, grid, "dev-c") or {}).get("shown") is True, timeout=5000)
    with qtbot.waitSignal(grid.ready, timeout=15_000):
        grid.reload()
    qtbot.waitUntil(lambda: (_flow(qtbot, grid, "dev-c") or {}).get("state") == "passed", timeout=5000)
    assert _flow(qtbot, grid, "dev-c")["text"] == "login-check: passed"
    qtbot.waitUntil(lambda: _colour_in(grab(grid), _flow(qtbot, grid, "dev-c")["rect"], PASSED), timeout=5000)
