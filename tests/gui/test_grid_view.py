"""The live grid with real streams: Xvnc + Chromium sources behind the real stream proxy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt

from tests.gui.helpers import (
    canvas_rects,
    close_to,
    dominant_colour,
    evaluate,
    grab,
    hex_colour,
    wait_for_colours,
)

DOUBLE_CLICK = """
document.querySelector('.pane[data-id="%s"] canvas')
  .dispatchEvent(new MouseEvent('dblclick', {bubbles: true, cancelable: true, detail: 2}));
1
"""
COLOURS = {"dev-red": "#c0392b", "dev-green": "#27ae60", "dev-blue": "#2980b9", "dev-purple": "#8e44ad"}


def _pane_colours(qtbot: Any, view: Any) -> dict[str, tuple[int, int, int]]:
    rects = canvas_rects(qtbot, view)
    image = grab(view)
    return {pane_id: dominant_colour(image, rect) for pane_id, rect in rects.items()}


def _wait_for_colours(qtbot: Any, view: Any, expected: dict[str, str], timeout: int = 20_000) -> None:
    wait_for_colours(qtbot, lambda: _pane_colours(qtbot, view), expected, timeout)


def _add_all(view: Any, colours: dict[str, str]) -> None:
    for pane_id in colours:
        view.add_pane(pane_id, pane_id, "ready")


def test_four_sources_fill_a_2x2_grid_with_distinct_live_screens(qtbot, grid_view, xvnc_source, tmp_path):
    xvnc_source.many(COLOURS)
    _add_all(grid_view, COLOURS)

    _wait_for_colours(qtbot, grid_view, COLOURS)

    rects = canvas_rects(qtbot, grid_view)
    # Four cells of a 2x2 grid: two columns, two rows, no overlap.
    assert len({x for x, _, _, _ in rects.values()}) == 2
    assert len({y for _, y, _, _ in rects.values()}) == 2
    assert all(w > 400 and h > 300 for _, _, w, h in rects.values())
    colours = list(_pane_colours(qtbot, grid_view).values())
    assert all(not close_to(a, b, 40) for i, a in enumerate(colours) for b in colours[i + 1 :])
    grab(grid_view).save(str(tmp_path / "grid-2x2.png"))


def test_layouts_change_the_cell_size(qtbot, grid_view, xvnc_source):
    colours = {"dev-red": COLOURS["dev-red"], "dev-green": COLOURS["dev-green"]}
    xvnc_source.many(colours)
    _add_all(grid_view, colours)
    _wait_for_colours(qtbot, grid_view, colours)

    grid_view.set_layout(1)
    qtbot.waitUntil(lambda: canvas_rects(qtbot, grid_view)["dev-red"][3] > 700)
    grid_view.set_layout(4)
    qtbot.waitUntil(lambda: canvas_rects(qtbot, grid_view)["dev-red"][3] < 200)
    assert grid_view.layout_columns() == 4


def test_double_click_fills_the_area_and_escape_restores_the_grid(qtbot, grid_view, xvnc_source):
    xvnc_source.many(COLOURS)
    _add_all(grid_view, COLOURS)
    _wait_for_colours(qtbot, grid_view, COLOURS)
    target = grid_view.focusProxy()

    # QTest cannot make a double-click QtWebEngine believes (its timestamps space
    # clicks apart), so the page gets a DOM dblclick on the pane's screen.
    with qtbot.waitSignal(grid_view.focus_changed, timeout=5000) as focused:
        evaluate(qtbot, grid_view, DOUBLE_CLICK % "dev-blue")
    assert focused.args == ["dev-blue"]
    # Only the focused pane is visible, and it fills the area.
    qtbot.waitUntil(lambda: list(canvas_rects(qtbot, grid_view)) == ["dev-blue"])
    _wait_for_colours(qtbot, grid_view, {"dev-blue": COLOURS["dev-blue"]})
    h = canvas_rects(qtbot, grid_view)["dev-blue"][3]
    assert h > 700

    with qtbot.waitSignal(grid_view.focus_changed, timeout=5000) as back:
        qtbot.keyClick(target, Qt.Key.Key_Escape)
    assert back.args == [""]
    _wait_for_colours(qtbot, grid_view, COLOURS)

    # The API does the same, and a second double-click returns to the grid.
    grid_view.focus_pane("dev-green")
    qtbot.waitUntil(lambda: list(canvas_rects(qtbot, grid_view)) == ["dev-green"])
    with qtbot.waitSignal(grid_view.focus_changed, timeout=5000) as toggled:
        evaluate(qtbot, grid_view, DOUBLE_CLICK % "dev-green")
    assert toggled.args == [""]
    _wait_for_colours(qtbot, grid_view, COLOURS)


# A page that ignores "view only" and sends a key ("r") and the clipboard, with
# a record of what noVNC sent: the stream proxy, not the page, must keep a view
# pane's input from the device.
SEND_INPUT_ANYWAY = """
(() => {
  const rfb = corralGrid.rfb('%s');
  window.sentTypes = [];
  const ws = rfb._sock._websocket;
  const send = ws.send.bind(ws);
  ws.send = (data) => { window.sentTypes.push(data[0]); send(data); };
  rfb.viewOnly = false;
  rfb.sendKey(0x72, "KeyR");
  rfb.clipboardPasteFrom("from a view pane");
  return window.sentTypes;
})()
"""
KEY_EVENTS = {4, 255}  # KeyEvent, QEMU extended key event
CLIENT_CUT_TEXT = 6


def test_control_reconnects_with_a_control_token_and_the_proxy_drops_view_input(
    qtbot, grid_view, xvnc_source, stream_farm
):
    scopes: list[str] = []

    def provider(device_id: str, scope: str) -> str:
        scopes.append(scope)
        return stream_farm.pane_url(device_id, scope)

    grid_view.set_url_provider(provider)
    # The device page turns red for the key "r", for good, and green for "g" unless it is red.
    page = (
        "<body style='margin:0;background:#202020;height:100vh'><script>addEventListener('keydown', e => {"
        " const s = document.body.style; if (e.key === 'r') s.background = '#d03030';"
        " if (e.key === 'g' && s.background !== 'rgb(208, 48, 48)') s.background = '#10d050'; });"
        "</script></body>"
    )
    xvnc_source("dev-input", html=page)
    grid_view.add_pane("dev-input", "dev-input", "ready")
    _wait_for_colours(qtbot, grid_view, {"dev-input": "#202020"})
    assert scopes == ["view"]
    assert evaluate(qtbot, grid_view, "corralGrid.viewOnly('dev-input')") is True

    # A view pane whose page sends input anyway: noVNC sends it, the proxy drops it.
    sent = set(evaluate(qtbot, grid_view, SEND_INPUT_ANYWAY % "dev-input"))
    assert sent & KEY_EVENTS
    assert CLIENT_CUT_TEXT in sent

    # The pane's own toggle button asks Qt, which grants control: the pane
    # reconnects with a control token, and its input reaches the device.
    with qtbot.waitSignal(grid_view.control_changed, timeout=5000) as granted:
        evaluate(qtbot, grid_view, "document.querySelector('.pane[data-id=dev-input] .control').click(); 1")
    assert granted.args == ["dev-input", True]
    assert scopes == ["view", "control"]
    qtbot.waitUntil(lambda: evaluate(qtbot, grid_view, "corralGrid.viewOnly('dev-input')") is False)
    qtbot.waitUntil(lambda: evaluate(qtbot, grid_view, "corralGrid.connected('dev-input')") is True)
    _wait_for_colours(qtbot, grid_view, {"dev-input": "#202020"})

    target = grid_view.focusProxy()
    x, y, w, h = canvas_rects(qtbot, grid_view)["dev-input"]
    centre = QPoint(x + w // 2, y + h // 2)
    qtbot.mouseClick(target, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.keyClick(target, Qt.Key.Key_G, Qt.KeyboardModifier.NoModifier)
    # Green, not red: the "r" sent over the view stream never reached the device.
    _wait_for_colours(qtbot, grid_view, {"dev-input": "#10d050"}, timeout=10_000)

    # Esc releases control: back to a view token.
    with qtbot.waitSignal(grid_view.control_changed, timeout=5000) as released:
        qtbot.keyClick(target, Qt.Key.Key_Escape)
    assert released.args == ["dev-input", False]
    assert scopes == ["view", "control", "view"]
    qtbot.waitUntil(lambda: evaluate(qtbot, grid_view, "corralGrid.viewOnly('dev-input')") is True)
    qtbot.waitUntil(lambda: evaluate(qtbot, grid_view, "corralGrid.connected('dev-input')") is True)


def test_removing_a_pane_disconnects_its_stream(qtbot, grid_view, xvnc_source):
    colours = {"dev-red": COLOURS["dev-red"], "dev-green": COLOURS["dev-green"]}
    xvnc_source.many(colours)
    _add_all(grid_view, colours)
    _wait_for_colours(qtbot, grid_view, colours)
    evaluate(qtbot, grid_view, "window.probe = corralGrid.rfb('dev-red'); 1")

    grid_view.remove_pane("dev-red")

    qtbot.waitUntil(lambda: evaluate(qtbot, grid_view, "corralGrid.paneIds().join()") == "dev-green")
    qtbot.waitUntil(lambda: evaluate(qtbot, grid_view, "probe._rfbConnectionState") == "disconnected")
    assert evaluate(qtbot, grid_view, "document.querySelectorAll('canvas').length") == 1
    assert grid_view.pane_ids() == ["dev-green"]


def test_a_dropped_stream_reconnects_with_a_fresh_url(qtbot, grid_view, xvnc_source, stream_farm):
    urls: list[str] = []

    def provider(device_id: str, scope: str) -> str:
        urls.append(device_id)
        return stream_farm.pane_url(device_id, scope)

    grid_view.set_url_provider(provider)
    xvnc_source("dev-flaky", colour="#c0392b")
    grid_view.add_pane("dev-flaky", "dev-flaky", "ready")
    _wait_for_colours(qtbot, grid_view, {"dev-flaky": "#c0392b"})
    assert urls == ["dev-flaky"]

    # The device's VNC server goes away and comes back (same socket, new picture).
    with qtbot.waitSignal(grid_view.pane_connection_changed, timeout=10_000) as lost:
        stream_farm.remove("dev-flaky")
    assert lost.args == ["dev-flaky", False]
    xvnc_source("dev-flaky", colour="#d4ac0d")

    _wait_for_colours(qtbot, grid_view, {"dev-flaky": "#d4ac0d"}, timeout=20_000)
    assert grid_view.is_connected("dev-flaky")
    assert len(urls) >= 2


@pytest.mark.parametrize(("grid_view", "jpeg"), [("raw", False), ("tight", True)], indirect=["grid_view"])
def test_photo_like_content_renders_in_either_encoding(qtbot, grid_view, jpeg, xvnc_source, caplog):
    # Raw: a 640x480 rect of 1.2 MB arrives over many WebSocket messages and is
    # drawn in bands. Tight: noise makes Xvnc pick JPEG, which the page decodes
    # with ImageDecoder.
    page = (
        "<body style='margin:0;cursor:none'><canvas id=c width=640 height=480></canvas><script>"
        "const x = document.getElementById('c').getContext('2d'); const d = x.createImageData(640, 480);"
        "let s = 7; for (let i = 0; i < d.data.length; i++) { s = (s * 1103515245 + 12345) & 0x7fffffff;"
        " d.data[i] = i % 4 === 3 ? 255 : (s >> 16) & 255; } x.putImageData(d, 0, 0);</script></body>"
    )
    xvnc_source("dev-photo", html=page)
    grid_view.add_pane("dev-photo", "dev-photo", "ready")
    assert evaluate(qtbot, grid_view, "typeof ImageDecoder") == "function"

    def noisy() -> bool:
        rects = canvas_rects(qtbot, grid_view)
        if "dev-photo" not in rects:
            return False
        x, y, w, h = rects["dev-photo"]
        if w < 20 or h < 20:
            return False
        image = grab(grid_view)
        values = [
            image.pixelColor(x + dx, y + dy).green() for dx in range(5, w - 5, 7) for dy in range(5, h - 5, 7)
        ]
        mean = sum(values) / len(values)
        return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 > 40

    qtbot.waitUntil(noisy, timeout=20_000)
    assert (evaluate(qtbot, grid_view, "corralGrid.jpegRects()") > 0) == jpeg
    assert "undecodable" not in caplog.text


CANVAS_GEOMETRY = """
JSON.stringify([...document.querySelectorAll('#grid .pane canvas')].map((canvas) => {
  const box = canvas.getBoundingClientRect();
  const room = canvas.parentElement.getBoundingClientRect();
  return [canvas.width, canvas.height, box.x, box.y, box.width, box.height, devicePixelRatio,
          room.width, room.height];
}))
"""


def _pixel_exact(qtbot: Any, view: Any) -> bool:
    """Every canvas has its CSS size in device pixels, at a whole-pixel position, fitting its room."""
    geometry = json.loads(evaluate(qtbot, view, CANVAS_GEOMETRY))
    return bool(geometry) and all(
        (width, height) == (round(css_width * ratio), round(css_height * ratio))
        and float(x * ratio).is_integer()
        and float(y * ratio).is_integer()
        and min(room_width - css_width, room_height - css_height) <= 1
        for width, height, x, y, css_width, css_height, ratio, room_width, room_height in geometry
    )


def test_canvases_are_drawn_pixel_for_pixel_at_whole_pixel_positions(qtbot, grid_view, xvnc_source):
    # The compositor then copies each pane instead of resampling it on every
    # frame; the page scales only what changed, once (novnc-patches.js).
    colours = {"dev-red": COLOURS["dev-red"], "dev-blue": COLOURS["dev-blue"]}
    xvnc_source.many(colours)
    _add_all(grid_view, colours)
    _wait_for_colours(qtbot, grid_view, colours)
    for layout in (1, 2, 3, 4):
        grid_view.set_layout(layout)
        # The page re-fits the canvases a frame or two after the layout changes.
        qtbot.waitUntil(lambda: _pixel_exact(qtbot, grid_view), timeout=5000)
        if layout > 1:  # in one column, the second pane is below the view
            # Scaled in the page, the picture still fills the canvas with the device's colour.
            _wait_for_colours(qtbot, grid_view, colours)


def test_panes_stay_in_name_order_whatever_order_they_come_in(qtbot, grid_view):
    for n in (3, 2, 10, 1, 4):
        grid_view.add_pane(f"dev-{n}", f"browser-{n}", "ready")

    script = "[...document.querySelectorAll('#grid .pane .name')].map((el) => el.textContent)"
    qtbot.waitUntil(lambda: len(evaluate(qtbot, grid_view, script)) == 5)
    assert evaluate(qtbot, grid_view, script) == [
        "browser-1",
        "browser-2",
        "browser-3",
        "browser-4",
        "browser-10",
    ]


CORNERS_PAGE = """<body style='margin:0;background:#202020;cursor:none'>
<div id=a style='position:fixed;left:0;top:0;width:80px;height:80px;background:#c0392b'></div>
<div id=b style='position:fixed;right:0;bottom:0;width:80px;height:80px;background:#c0392b'></div>
<script>setTimeout(() => {
  for (const id of ['a', 'b']) document.getElementById(id).style.background = '#27ae60';
}, 1500);</script></body>"""


def test_an_update_in_opposite_corners_redraws_both_and_nothing_between(qtbot, grid_view, xvnc_source):
    # Two small rects far apart: the page redraws each (scaled), not their bounding box.
    xvnc_source("dev-corners", html=CORNERS_PAGE)
    grid_view.add_pane("dev-corners", "dev-corners", "ready")
    green, grey = hex_colour("#27ae60"), hex_colour("#202020")

    def corners() -> tuple[Any, Any, Any]:
        x, y, w, h = canvas_rects(qtbot, grid_view)["dev-corners"]
        corner = max(4, w * 80 // 640 // 2)
        image = grab(grid_view)
        return (
            dominant_colour(image, (x + 2, y + 2, corner, corner), step=2),
            dominant_colour(image, (x + w - corner - 2, y + h - corner - 2, corner, corner), step=2),
            dominant_colour(image, (x + w // 3, y + h // 3, w // 3, h // 3)),
        )

    qtbot.waitUntil(lambda: "dev-corners" in canvas_rects(qtbot, grid_view), timeout=20_000)
    qtbot.waitUntil(lambda: all(close_to(c, green, 40) for c in corners()[:2]), timeout=20_000)
    assert close_to(corners()[2], grey, 24)
