"""Entry point of the desktop app: Qt, the qasync loop, the backend, the window.

``run(settings)`` is what ``corral`` (no command, or ``corral ui``) and
``python -m app`` call. One process, one loop: Qt's event loop drives asyncio
through qasync, and the backend runs on it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from app.environment import configure_qt_environment

if TYPE_CHECKING:
    from backend.api import Settings

__all__ = ["main", "run"]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 20.0


def run(settings: Settings | None = None) -> int:
    """Run the app until the operator quits; returns the process exit code.

    *settings* None means ``Settings()`` from the environment.
    Quitting stops the backend (and the embedded Postgres); devices keep
    running and reappear on the next start. Must be called on the main thread,
    with no QApplication created yet by anyone else.
    """
    configure_qt_environment()
    # QtWebEngine must be imported before the QApplication exists.
    import qasync
    from PySide6.QtWebEngineWidgets import QWebEngineView  # noqa: F401
    from PySide6.QtWidgets import QApplication

    from app.theme import apply_dark_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Corral")
    app.setApplicationDisplayName("Corral")
    app.setDesktopFileName("corral")
    app.setQuitOnLastWindowClosed(False)  # quitting is ours: the backend must stop first
    apply_dark_theme(app)

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        return int(loop.run_until_complete(_session(app, settings)))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def main() -> int:
    """``python -m app``: settings from the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(None)


async def _session(app: object, settings: Settings | None) -> int:
    from PySide6.QtWidgets import QMessageBox

    from app.widgets.main_window import MainWindow, describe_error
    from backend.api import Corral

    quit_requested = asyncio.Event()
    _install_signal_handlers(quit_requested)
    try:
        # The window takes over as host whenever the current host (say, a
        # `corral serve`) stops.
        corral = await Corral.start(settings, role="standby")
    except Exception as exc:
        logger.error("Corral could not start", exc_info=not _is_corral_error(exc))
        box = QMessageBox(QMessageBox.Icon.Critical, "Corral could not start", describe_error(exc))
        box.finished.connect(quit_requested.set)
        box.open()
        await quit_requested.wait()
        return 1

    window = MainWindow(corral, grid_encoding=corral.settings.grid_encoding)
    window.closed.connect(quit_requested.set)
    window.show()
    window.start()
    try:
        await quit_requested.wait()
    finally:
        if window.isVisible():
            window.close()
        try:
            await asyncio.wait_for(corral.stop(), _STOP_TIMEOUT_S)
        except Exception:
            logger.exception("the backend did not stop cleanly")
            return 1
        finally:
            window.deleteLater()
    return 0


def _is_corral_error(exc: BaseException) -> bool:
    from backend.api import CorralError

    return isinstance(exc, CorralError)


def _install_signal_handlers(quit_requested: asyncio.Event) -> None:
    """SIGINT/SIGTERM quit like closing the window does (backend stopped cleanly)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, quit_requested.set)
        except (NotImplementedError, RuntimeError, ValueError):
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(quit_requested.set))
