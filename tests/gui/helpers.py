"""Helpers for GUI tests: drive the qasync loop, query the grid page, read pixels."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

__all__ = [
    "canvas_rects",
    "close_to",
    "dispose_widget",
    "dominant_colour",
    "evaluate",
    "grab",
    "hex_colour",
    "run_async",
    "save_screenshot",
]

Colour = tuple[int, int, int]


def run_async(qtbot: Any, coro: Coroutine[Any, Any, Any], timeout: int = 10_000) -> Any:
    """Run *coro* on the test's qasync loop while Qt keeps processing events."""
    task = asyncio.ensure_future(coro)
    qtbot.waitUntil(task.done, timeout=timeout)
    return task.result()


def evaluate(qtbot: Any, view: Any, script: str, timeout: int = 5000) -> Any:
    """Run *script* in the grid page and return its (JSON-able) result."""
    box: list[Any] = []
    view.evaluate(script, box.append)
    qtbot.waitUntil(lambda: bool(box), timeout=timeout)
    return box[0]


def canvas_rects(qtbot: Any, view: Any) -> dict[str, tuple[int, int, int, int]]:
    """Visible canvas rectangle (x, y, w, h in view pixels) of every pane that has one."""
    script = """
    JSON.stringify(Object.fromEntries([...document.querySelectorAll('.pane')]
      .map((pane) => [pane.dataset.id, pane.querySelector('canvas')])
      .filter(([, canvas]) => canvas && canvas.offsetParent !== null && canvas.width > 0)
      .map(([id, canvas]) => { const r = canvas.getBoundingClientRect();
        return [id, [r.x, r.y, r.width, r.height].map(Math.round)]; })))
    """
    zoom = view.zoomFactor()
    rects = json.loads(evaluate(qtbot, view, script))
    return {pane_id: tuple(round(v * zoom) for v in rect) for pane_id, rect in rects.items()}


def dominant_colour(image: Any, rect: tuple[int, int, int, int], step: int = 6) -> Colour:
    """The most common colour (quantised to 8 levels) in *rect* of a QImage, as its mean."""
    x0, y0, width, height = rect
    # A canvas may overhang the image for a moment while the page re-lays out.
    width, height = min(width, image.width() - x0), min(height, image.height() - y0)
    buckets: Counter[tuple[int, int, int]] = Counter()
    sums: dict[tuple[int, int, int], list[int]] = {}
    for y in range(y0 + 2, y0 + height - 2, step):
        for x in range(x0 + 2, x0 + width - 2, step):
            colour = image.pixelColor(x, y)
            rgb = (colour.red(), colour.green(), colour.blue())
            key = (rgb[0] >> 5, rgb[1] >> 5, rgb[2] >> 5)
            buckets[key] += 1
            acc = sums.setdefault(key, [0, 0, 0, 0])
            for i in range(3):
                acc[i] += rgb[i]
            acc[3] += 1
    if not buckets:
        return (0, 0, 0)
    key, _ = buckets.most_common(1)[0]
    r, g, b, n = sums[key]
    return (r // n, g // n, b // n)


def hex_colour(text: str) -> Colour:
    text = text.lstrip("#")
    return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))


def close_to(a: Colour, b: Colour, tolerance: int = 16) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def grab(view: Any) -> Any:
    """The view's pixels as a QImage (software rendering makes ``grab()`` real)."""
    return view.grab().toImage()


def dispose_widget(qtbot: Any, widget: Any) -> None:
    """Close and delete a widget now: a QWebEnginePage must die before its profile."""
    import shiboken6

    widget.close()
    qtbot.wait(10)
    if shiboken6.isValid(widget):
        shiboken6.delete(widget)


def save_screenshot(widget: Any, directory: Path, name: str) -> Path:
    """Grab *widget* into *directory*/*name*; also into ``$CORRAL_TEST_SCREENSHOTS`` when set."""
    image = widget.grab().toImage()
    path = directory / name
    image.save(str(path))
    extra = os.environ.get("CORRAL_TEST_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        image.save(str(Path(extra) / name))
    return path


def wait_for_colours(
    qtbot: Any,
    pane_colours: Callable[[], dict[str, Colour]],
    expected: dict[str, str],
    timeout: int = 20_000,
) -> None:
    """Wait until ``pane_colours()`` shows exactly the *expected* panes in their colours."""
    seen: dict[str, Colour] = {}

    def shown() -> bool:
        seen.clear()
        seen.update(pane_colours())
        return set(seen) == set(expected) and all(
            close_to(seen[pane_id], hex_colour(colour)) for pane_id, colour in expected.items()
        )

    try:
        qtbot.waitUntil(shown, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"panes show {seen}, expected {expected}") from None
