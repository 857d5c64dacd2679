"""GUI test fixtures: Qt set up for software rendering, fake devices, the grid view.

Every test here is marked ``gui``. They need an X display (Xvfb), TigerVNC's
``Xvnc`` and Chromium; without them the tests are skipped, not failed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.environment import configure_qt_environment

configure_qt_environment()
# QtWebEngine must be imported before pytest-qt creates the QApplication.
from PySide6.QtWebEngineWidgets import QWebEngineView  # noqa: E402, F401

from tests.gui.helpers import dispose_widget  # noqa: E402
from tests.xvnc import CHROMIUM, XVNC, XvncSource, colour_page  # noqa: E402

_HERE = Path(__file__).resolve().parent
_HAVE_DISPLAY = bool(os.environ.get("DISPLAY")) or os.environ.get("QT_QPA_PLATFORM") == "offscreen"
_HAVE_SOURCES = shutil.which(XVNC) is not None and shutil.which(CHROMIUM) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gui)
            if not _HAVE_DISPLAY:
                item.add_marker(pytest.mark.skip(reason="no X display (run under Xvfb)"))


@pytest.fixture(scope="session")
def stream_farm() -> Iterator[Any]:
    """The real stream proxy in front of a directory of fake devices (one per session)."""
    if not _HAVE_SOURCES:
        pytest.skip(f"needs {XVNC} and {CHROMIUM}")
    from tests.gui.farm import StreamFarm

    farm = StreamFarm().start()
    yield farm
    farm.stop()


@pytest.fixture
def xvnc_source(stream_farm: Any) -> Iterator[Callable[..., XvncSource]]:
    """Factory: ``xvnc_source(device_id, html=None, colour="#c0392b")`` starts a fake device.

    The page defaults to *colour* with the id in big letters. Sources end with the test.
    ``xvnc_source.many({id: colour})`` starts several in parallel.
    """
    started: list[str] = []

    def start(
        device_id: str, html: str | None = None, colour: str = "#c0392b", width: int = 640, height: int = 480
    ) -> XvncSource:
        source = stream_farm.add(device_id, html or colour_page(device_id, colour), width, height)
        started.append(device_id)
        return source

    def many(colours: dict[str, str], width: int = 640, height: int = 480) -> list[XvncSource]:
        pages = {device_id: colour_page(device_id, colour) for device_id, colour in colours.items()}
        sources = stream_farm.add_many(pages, width, height)
        started.extend(colours)
        return list(sources)

    start.many = many  # type: ignore[attr-defined]
    yield start
    for device_id in started:
        stream_farm.remove(device_id)


@pytest.fixture
def grid_view(qtbot: Any, stream_farm: Any) -> Iterator[Any]:
    """A shown GridView (1280x800) whose page has loaded, streaming from the farm."""
    from app.widgets.grid_view import GridView

    view = GridView()
    view.set_url_provider(stream_farm.pane_url)
    view.resize(1280, 800)
    view.show()
    qtbot.waitUntil(view.is_ready, timeout=15_000)
    yield view
    dispose_widget(qtbot, view)


@pytest.fixture
def qt_loop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    """A qasync loop marked running while Qt's events are processed (qtbot waits drive it)."""
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    # Not loop.stop(): it calls QApplication.exit(), which leaves Qt's "quit now"
    # flag set and makes every later nested event loop (qtbot waits) return at once.
    loop._QEventLoop__is_running = False  # type: ignore[attr-defined]
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)
    loop.close()
