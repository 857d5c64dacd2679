"""GUI test fixtures: Qt set up for software rendering, the grid view, a real backend.

Every test here is marked ``gui``. They need an X display (Xvfb); the grid view
tests need TigerVNC's ``Xvnc`` and Chromium on the host (sources behind the real
stream proxy), and the window tests need a Docker daemon with the browser device
image (a real ``Corral``: embedded Postgres, real containers). Without them the
tests are skipped, or fail when ``CORRAL_REQUIRE`` names them (tests/require.py).
"""

from __future__ import annotations

import asyncio
import contextlib
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

from backend.api import Corral, Settings  # noqa: E402
from tests.gui.helpers import dispose_widget, run_async  # noqa: E402
from tests.require import missing  # noqa: E402
from tests.xvnc import CHROMIUM, XVNC, XvncSource, colour_page  # noqa: E402

_HERE = Path(__file__).resolve().parent
_HAVE_DISPLAY = bool(os.environ.get("DISPLAY")) or os.environ.get("QT_QPA_PLATFORM") == "offscreen"
_HAVE_SOURCES = shutil.which(XVNC) is not None and shutil.which(CHROMIUM) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gui)


@pytest.fixture(scope="session", autouse=True)
def _display() -> None:
    """Every GUI test needs an X display; set up before any other session fixture of theirs."""
    if not _HAVE_DISPLAY:
        missing("display", "no X display (run under Xvfb)")


@pytest.fixture(scope="session", autouse=True)
def _app_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The app's QSettings (recent flows…) go to a temp dir, never the user's."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))


@pytest.fixture(scope="session")
def stream_farm() -> Iterator[Any]:
    """The real stream proxy in front of a directory of fake devices (one per session)."""
    if not _HAVE_SOURCES:
        missing("xvnc", f"needs {XVNC} and {CHROMIUM}")
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
def grid_view(request: pytest.FixtureRequest, qtbot: Any, stream_farm: Any) -> Iterator[Any]:
    """A shown GridView (1280x800) whose page has loaded, streaming from the farm.

    Parametrize it indirectly with an encoding ("raw", the default, or "tight").
    """
    from app.widgets.grid_view import GridView

    view = GridView(encoding=getattr(request, "param", "raw"))
    view.set_url_provider(stream_farm.pane_url)
    view.resize(1280, 800)
    view.show()
    qtbot.waitUntil(view.is_ready, timeout=15_000)
    yield view
    dispose_widget(qtbot, view)


@pytest.fixture
def qt_owned(qtbot: Any) -> Iterator[Callable[[Any], Any]]:
    """``qt_owned(obj)`` returns the QObject *obj* and deletes it on the Qt thread after the test.

    Left to the garbage collector, a QObject may die on another thread (GC runs
    wherever Python allocates, e.g. in an executor thread), where Qt cannot stop
    its timers; they then fire into freed memory and crash a later test.
    """
    import shiboken6
    from PySide6.QtWidgets import QWidget

    owned: list[Any] = []

    def own(obj: Any) -> Any:
        owned.append(obj)
        return obj

    yield own
    for obj in reversed(owned):
        if shiboken6.isValid(obj):
            if isinstance(obj, QWidget):
                obj.close()
            shiboken6.delete(obj)


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
    # Delete the loop's QObjects now, on this (the Qt) thread. Left to the garbage
    # collector they may die on another thread (GC runs wherever Python allocates,
    # e.g. in an executor thread making a Docker call), where Qt cannot unregister
    # their pending timers ("Timers cannot be stopped from another thread"), which
    # then fire into freed memory and crash a later test.
    import shiboken6

    for qobject in (loop._timer, loop._QEventLoop__call_soon_signaller):  # type: ignore[attr-defined]
        if shiboken6.isValid(qobject):
            shiboken6.delete(qobject)


@pytest.fixture
def corral(
    qtbot: Any, qt_loop: asyncio.AbstractEventLoop, settings: Settings, docker_available: None
) -> Iterator[Corral]:
    """A real host ``Corral`` on the test's database, running on the Qt loop.

    Devices still there at the end are removed (and waited for) before it stops.
    """
    instance = run_async(qtbot, Corral.start(settings, role="host"), timeout=60_000)
    try:
        yield instance
    finally:
        run_async(qtbot, _remove_all_and_stop(instance), timeout=120_000)


async def _remove_all_and_stop(instance: Corral) -> None:
    try:
        ids = [device.id for device in await instance.devices()]
        if ids:
            await instance.remove(ids)
            await instance.wait_for(ids, {"removed"}, timeout=90)
    finally:
        await instance.stop()


@pytest.fixture
def window(qtbot: Any, corral: Corral) -> Iterator[Any]:
    """The main window on the real backend, in the app's theme: shown, grid page loaded, started."""
    with dark_theme(), open_window(qtbot, corral) as win:
        yield win


@contextlib.contextmanager
def dark_theme() -> Iterator[None]:
    """The app's look (what ``app.main.run`` applies) for the duration; restored after."""
    from PySide6.QtWidgets import QApplication

    from app.theme import apply_dark_theme

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    style, palette, sheet = app.style().name(), app.palette(), app.styleSheet()
    apply_dark_theme(app)
    try:
        yield
    finally:
        app.setStyleSheet(sheet)
        app.setPalette(palette)
        app.setStyle(style)


@contextlib.contextmanager
def open_window(qtbot: Any, backend: Any) -> Iterator[Any]:
    """``MainWindow(backend)`` at 1440x900, shown, its grid page loaded, started; disposed after."""
    from app.widgets.main_window import MainWindow

    win = MainWindow(backend)
    try:
        win.resize(1440, 900)
        win.show()
        qtbot.waitUntil(win.grid().is_ready, timeout=15_000)
        with qtbot.waitSignal(win.devices_loaded, timeout=15_000):
            win.start()
        yield win
    finally:
        dispose_widget(qtbot, win)
