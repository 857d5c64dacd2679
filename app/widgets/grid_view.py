"""The live grid: one QWebEngineView hosting one page with a noVNC canvas per pane.

One page for all panes is a measured choice (see DESIGN.md, "Live grid
rendering"): a view per pane costs a renderer process and ~130 MB each and
halves the frame rate at 16 panes. The page (``resources/grid/``) mirrors the
state kept here; ``_GridBridge`` carries it over QWebChannel both ways.

The view owns what an operator sees of the streams: the layout, which panes
exist, which one fills the area, which one is in control, which are selected
(pane headers), the flow overlay each shows, and reconnecting a dropped stream
with a fresh URL. Taking or releasing control reconnects the
pane with a URL of the new scope (``control`` or ``view``): the stream proxy,
not the page, is what keeps a view pane's input from the device. What a pane *is* (which devices get one) is
decided by the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from PySide6.QtCore import QObject, QPoint, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtWebChannel import QWebChannel
from PySide6.QtWebEngineCore import QWebEnginePage, QWebEngineSettings
from PySide6.QtWebEngineWidgets import QWebEngineView
from PySide6.QtWidgets import QWidget

from app.paths import grid_page_path
from backend.api import StreamScope

__all__ = ["DEFAULT_COMPRESSION", "DEFAULT_QUALITY", "LAYOUTS", "Encoding", "GridView", "UrlProvider"]

logger = logging.getLogger(__name__)

LAYOUTS = (1, 2, 3, 4)
"""Grid layouts as columns per row: 1, 2x2, 3x3, 4x4."""

Encoding = Literal["raw", "tight"]
"""What the panes ask devices for first: raw pixels (local streams: no encoding
or decoding work), or Tight with JPEG (streams over a slow link)."""

DEFAULT_QUALITY = 6
"""noVNC ``qualityLevel`` (0..9): with ``tight``, the JPEG quality Xvnc uses for photo-like regions."""
DEFAULT_COMPRESSION = 1
"""noVNC ``compressionLevel`` (0..9): zlib effort for lossless regions; low is cheap on loopback."""

UrlProvider = Callable[[str, StreamScope], str]
"""Returns a fresh stream URL for a device id and scope; may raise when there is none.

The pane in control gets a ``control`` URL, every other pane a ``view`` URL:
the stream proxy drops a view pane's input, whatever the page does."""

_RECONNECT_FIRST_DELAY_MS = 250
_RECONNECT_MAX_DELAY_MS = 5000
_PAGE_RELOAD_DELAY_MS = 1000


@dataclass(slots=True)
class _Pane:
    name: str
    state: str
    failures: int = 0
    connected: bool = False
    timer: QTimer | None = field(default=None, repr=False)

    def cancel_retry(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer.deleteLater()
            self.timer = None


class _GridBridge(QObject):
    """The object the page sees as ``bridge``. Signals go to the page, slots come from it.

    The slots only re-emit as Qt signals for ``GridView``; the page may call them
    at any time, with any arguments, so they do nothing else.
    """

    # Qt -> page: state changes the page mirrors.
    layout_changed = Signal(int)
    pane_added = Signal(str, str, str, str)
    pane_updated = Signal(str, str, str)
    pane_removed = Signal(str)
    pane_url_renewed = Signal(str, str)
    focus_changed = Signal(str)
    control_changed = Signal(str, bool)
    frame_stats_toggled = Signal(bool)
    script_posted = Signal(int, str)
    selection_changed = Signal(str)
    pane_flow_changed = Signal(str, str)
    # page -> GridView.
    ready = Signal()
    clicked = Signal(str, bool)
    double_clicked = Signal(str)
    menu_requested = Signal(str, int, int)
    control_requested = Signal(str, bool)
    escape = Signal()
    connected = Signal(str)
    disconnected = Signal(str, bool)
    stats = Signal(str)
    script_done = Signal(int, str)

    @Slot()
    def page_ready(self) -> None:
        self.ready.emit()

    @Slot(str)
    def pane_double_clicked(self, pane_id: str) -> None:
        self.double_clicked.emit(pane_id)

    @Slot(str, bool)
    def pane_clicked(self, pane_id: str, toggle: bool) -> None:
        self.clicked.emit(pane_id, toggle)

    @Slot(str, int, int)
    def context_menu_requested(self, pane_id: str, x: int, y: int) -> None:
        self.menu_requested.emit(pane_id, x, y)

    @Slot(str, bool)
    def control_toggle_requested(self, pane_id: str, on: bool) -> None:
        self.control_requested.emit(pane_id, on)

    @Slot()
    def escape_pressed(self) -> None:
        self.escape.emit()

    @Slot(str)
    def pane_connected(self, pane_id: str) -> None:
        self.connected.emit(pane_id)

    @Slot(str, bool)
    def pane_disconnected(self, pane_id: str, clean: bool) -> None:
        self.disconnected.emit(pane_id, clean)

    @Slot(str)
    def frame_stats_reported(self, report: str) -> None:
        self.stats.emit(report)

    @Slot(int, str)
    def script_finished(self, request_id: int, result: str) -> None:
        self.script_done.emit(request_id, result)


class _GridPage(QWebEnginePage):
    """Routes the page's console to logging, so page errors are not lost."""

    _LEVELS = {
        QWebEnginePage.JavaScriptConsoleMessageLevel.InfoMessageLevel: logging.DEBUG,
        QWebEnginePage.JavaScriptConsoleMessageLevel.WarningMessageLevel: logging.WARNING,
        QWebEnginePage.JavaScriptConsoleMessageLevel.ErrorMessageLevel: logging.ERROR,
    }

    def javaScriptConsoleMessage(
        self, level: QWebEnginePage.JavaScriptConsoleMessageLevel, message: str, line: int, source: str
    ) -> None:
        severity = self._LEVELS.get(level, logging.INFO)
        if "/@novnc/" in source:
            # noVNC reports every failed (re)connect as an error; the view retries.
            severity = min(severity, logging.INFO)
        elif "willReadFrequently" in message:
            # Chromium's hint about the frame counter reading noVNC's canvas.
            severity = logging.DEBUG
        logger.log(severity, "grid page: %s (%s:%d)", message, source, line)


class GridView(QWebEngineView):
    """Shows live device panes in a 1/2x2/3x3/4x4 grid; one pane can fill the area.

    *encoding* is what every pane asks its device for first (see ``Encoding``);
    *quality* and *compression* are the noVNC levels that go with ``tight``.
    Call ``set_url_provider`` before adding panes. All methods return at once; the
    page catches up asynchronously (``ready`` is emitted each time it has loaded
    and received the current state).
    """

    ready = Signal()
    focus_changed = Signal(str)
    """The pane filling the area, or "" for the grid."""
    control_changed = Signal(str, bool)
    """A pane took (True) or released (False) control of its device."""
    context_menu_requested = Signal(str, QPoint)
    """Right-click on a pane ("" for empty space), at a global position."""
    pane_connection_changed = Signal(str, bool)
    frame_stats_received = Signal(dict)
    """``{"time": ms, "panes": {id: {"flips", "frames", "connected"}}}``, ~1/s while enabled."""
    selection_changed = Signal(list)
    """Pane ids the operator selected by clicking pane headers (not emitted by ``set_selected``)."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        encoding: Encoding = "raw",
        quality: int = DEFAULT_QUALITY,
        compression: int = DEFAULT_COMPRESSION,
    ) -> None:
        super().__init__(parent)
        self._panes: dict[str, _Pane] = {}
        self._layout = 2
        self._focused = ""
        self._control = ""
        self._selected: list[str] = []
        self._flows: dict[str, str] = {}
        self._frame_stats = False
        self._page_ready = False
        self._url_provider: UrlProvider | None = None
        self._script_ids = 0
        self._script_callbacks: dict[int, Callable[[Any], None]] = {}

        page = _GridPage(self)
        settings = page.settings()
        # The page is a local file; its streams are ws://127.0.0.1.
        settings.setAttribute(QWebEngineSettings.WebAttribute.LocalContentCanAccessRemoteUrls, True)
        settings.setAttribute(QWebEngineSettings.WebAttribute.LocalContentCanAccessFileUrls, True)
        settings.setAttribute(QWebEngineSettings.WebAttribute.ReadingFromCanvasEnabled, True)
        settings.setAttribute(QWebEngineSettings.WebAttribute.WebGLEnabled, False)
        settings.setAttribute(QWebEngineSettings.WebAttribute.Accelerated2dCanvasEnabled, False)
        settings.setAttribute(QWebEngineSettings.WebAttribute.ScrollAnimatorEnabled, False)
        settings.setAttribute(QWebEngineSettings.WebAttribute.NavigateOnDropEnabled, False)
        page.setBackgroundColor(Qt.GlobalColor.black)
        self._bridge = _GridBridge(self)
        self._channel = QWebChannel(page)
        self._channel.registerObject("bridge", self._bridge)
        page.setWebChannel(self._channel)
        self.setPage(page)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.setAcceptDrops(False)

        self._bridge.ready.connect(self._on_bridge_ready)
        self._bridge.double_clicked.connect(self._on_bridge_double_clicked)
        self._bridge.clicked.connect(self._on_bridge_clicked)
        self._bridge.menu_requested.connect(self._on_bridge_menu_requested)
        self._bridge.control_requested.connect(self._on_bridge_control_requested)
        self._bridge.escape.connect(self._on_bridge_escape)
        self._bridge.connected.connect(self._on_bridge_connected)
        self._bridge.disconnected.connect(self._on_bridge_disconnected)
        self._bridge.stats.connect(self._on_bridge_stats)
        self._bridge.script_done.connect(self._on_bridge_script_done)
        page.renderProcessTerminated.connect(self._on_page_render_process_terminated)
        page.loadFinished.connect(self._on_page_load_finished)

        url = QUrl.fromLocalFile(str(grid_page_path()))
        url.setQuery(f"encoding={encoding}&quality={quality}&compression={compression}")
        self.load(url)

    # -- queries ---------------------------------------------------------------

    def set_url_provider(self, provider: UrlProvider) -> None:
        """Where fresh stream URLs come from; called for every (re)connect."""
        self._url_provider = provider

    def is_ready(self) -> bool:
        return self._page_ready

    def layout_columns(self) -> int:
        return self._layout

    def pane_ids(self) -> list[str]:
        return list(self._panes)

    def has_pane(self, pane_id: str) -> bool:
        return pane_id in self._panes

    def is_connected(self, pane_id: str) -> bool:
        pane = self._panes.get(pane_id)
        return pane is not None and pane.connected

    def focused_pane(self) -> str:
        return self._focused

    def control_pane(self) -> str:
        return self._control

    def pane_flow(self, pane_id: str) -> str:
        """The flow overlay (JSON) sent for *pane_id*, or "" for none."""
        return self._flows.get(pane_id, "")

    def selected_panes(self) -> list[str]:
        """Selected pane ids, in the order they were selected."""
        return list(self._selected)

    def evaluate(self, script: str, callback: Callable[[Any], None]) -> None:
        """Run *script* in the page; *callback* gets its JSON-able result (tests, benchmarks).

        A promise is awaited; a thrown error arrives as ``{"error": message}``.
        This goes over the channel, not ``QWebEnginePage.runJavaScript``: in
        PySide6 6.12 every ``runJavaScript`` call drops a reference to ``None``,
        which ends in a crash once enough calls were made. Raises RuntimeError
        before the page is ready.
        """
        if not self._page_ready:
            raise RuntimeError("the grid page is not ready yet")
        self._script_ids += 1
        self._script_callbacks[self._script_ids] = callback
        self._bridge.script_posted.emit(self._script_ids, script)

    # -- public slots ----------------------------------------------------------

    @Slot(int)
    def set_layout(self, columns: int) -> None:
        if columns not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {columns}")
        self._layout = columns
        if self._page_ready:
            self._bridge.layout_changed.emit(columns)

    @Slot(str, str, str)
    def add_pane(self, pane_id: str, name: str, state: str) -> None:
        """Add a pane and connect its stream; an existing pane is only updated."""
        if pane_id in self._panes:
            self.update_pane(pane_id, name, state)
            return
        self._panes[pane_id] = _Pane(name=name, state=state)
        if self._page_ready:
            self._send_pane(pane_id)

    @Slot(str, str, str)
    def update_pane(self, pane_id: str, name: str, state: str) -> None:
        pane = self._panes.get(pane_id)
        if pane is None or (pane.name, pane.state) == (name, state):
            return
        pane.name, pane.state = name, state
        if self._page_ready:
            self._bridge.pane_updated.emit(pane_id, name, state)

    @Slot(str)
    def remove_pane(self, pane_id: str) -> None:
        """Remove a pane; the page disconnects its stream."""
        pane = self._panes.pop(pane_id, None)
        if pane is None:
            return
        pane.cancel_retry()
        if self._control == pane_id:
            self._control = ""
            self.control_changed.emit(pane_id, False)
        if self._focused == pane_id:
            self._focused = ""
            self.focus_changed.emit("")
        if self._page_ready:
            self._bridge.pane_removed.emit(pane_id)
        if pane_id in self._selected:
            self._selected.remove(pane_id)  # the page drops its element; nothing to send

    @Slot(list)
    def set_selected(self, pane_ids: list[str]) -> None:
        """Select exactly *pane_ids* (ids without a pane are left out); emits nothing."""
        selected = list(dict.fromkeys(i for i in pane_ids if i in self._panes))
        if selected != self._selected:
            self._selected = selected
            self._send_selection()

    @Slot(str, str)
    def set_pane_flow(self, pane_id: str, overlay: str) -> None:
        """Show the flow overlay *overlay* (JSON: state, position, text) on a pane; "" clears it.

        Kept for a pane added later and replayed to a reloaded page.
        """
        if overlay == self._flows.get(pane_id, ""):
            return
        if overlay:
            self._flows[pane_id] = overlay
        else:
            self._flows.pop(pane_id, None)
        if self._page_ready and pane_id in self._panes:
            self._bridge.pane_flow_changed.emit(pane_id, overlay)

    @Slot(str)
    def focus_pane(self, pane_id: str) -> None:
        """Let one pane fill the area ("" returns to the grid)."""
        if pane_id and pane_id not in self._panes:
            return
        if pane_id == self._focused:
            return
        self._focused = pane_id
        if self._page_ready:
            self._bridge.focus_changed.emit(pane_id)
        self.focus_changed.emit(pane_id)

    @Slot()
    def show_grid(self) -> None:
        self.focus_pane("")

    @Slot(str, bool)
    def set_control(self, pane_id: str, on: bool) -> None:
        """Give one pane control of its device (at most one at a time), or take it back."""
        if on and pane_id not in self._panes:
            return
        if on:
            if self._control == pane_id:
                return
            self._release_control()
            self._control = pane_id
            if self._page_ready:
                self._bridge.control_changed.emit(pane_id, True)
                self._reconnect_with_scope(pane_id)
            self.control_changed.emit(pane_id, True)
            self.setFocus(Qt.FocusReason.OtherFocusReason)
        elif self._control == pane_id:
            self._release_control()

    @Slot()
    def release_control(self) -> None:
        self._release_control()

    @Slot(str)
    def reconnect_pane(self, pane_id: str) -> None:
        """Drop and reopen a pane's stream with a fresh URL."""
        pane = self._panes.get(pane_id)
        if pane is None or not self._page_ready:
            return
        pane.cancel_retry()
        pane.failures = 0
        self._renew_url(pane_id)

    @Slot(bool)
    def set_frame_stats(self, on: bool) -> None:
        """Count changed frames per pane and emit ``frame_stats_received`` (costs some CPU)."""
        self._frame_stats = on
        if self._page_ready:
            self._bridge.frame_stats_toggled.emit(on)

    # -- private slots ---------------------------------------------------------

    @Slot(bool)
    def _on_page_load_finished(self, ok: bool) -> None:
        if not ok:
            logger.error("the grid page failed to load from %s", grid_page_path())

    @Slot()
    def _on_bridge_ready(self) -> None:
        # A fresh page knows nothing: replay everything, with fresh stream URLs.
        self._page_ready = True
        self._bridge.layout_changed.emit(self._layout)
        self._bridge.frame_stats_toggled.emit(self._frame_stats)
        for pane_id in self._panes:
            self._send_pane(pane_id)
        self._bridge.focus_changed.emit(self._focused)
        self._send_selection()
        if self._control:
            self._bridge.control_changed.emit(self._control, True)
        self.ready.emit()

    @Slot(str)
    def _on_bridge_double_clicked(self, pane_id: str) -> None:
        self.focus_pane("" if pane_id == self._focused else pane_id)

    @Slot(str, bool)
    def _on_bridge_clicked(self, pane_id: str, toggle: bool) -> None:
        if pane_id not in self._panes:
            return
        if not toggle:
            selected = [pane_id]
        elif pane_id in self._selected:
            selected = [i for i in self._selected if i != pane_id]
        else:
            selected = [*self._selected, pane_id]
        if selected != self._selected:
            self._selected = selected
            self._send_selection()
            self.selection_changed.emit(list(selected))

    @Slot(str, int, int)
    def _on_bridge_menu_requested(self, pane_id: str, x: int, y: int) -> None:
        zoom = self.zoomFactor()
        position = self.mapToGlobal(QPoint(round(x * zoom), round(y * zoom)))
        self.context_menu_requested.emit(pane_id, position)

    @Slot(str, bool)
    def _on_bridge_control_requested(self, pane_id: str, on: bool) -> None:
        self.set_control(pane_id, on)

    @Slot()
    def _on_bridge_escape(self) -> None:
        self._release_control()
        self.show_grid()

    @Slot(str)
    def _on_bridge_connected(self, pane_id: str) -> None:
        pane = self._panes.get(pane_id)
        if pane is None:
            return
        pane.failures = 0
        pane.connected = True
        self.pane_connection_changed.emit(pane_id, True)

    @Slot(str, bool)
    def _on_bridge_disconnected(self, pane_id: str, clean: bool) -> None:
        pane = self._panes.get(pane_id)
        if pane is None:
            return
        was_connected = pane.connected
        pane.connected = False
        if was_connected:
            logger.info("stream of %s dropped (clean=%s); reconnecting", pane_id, clean)
            self.pane_connection_changed.emit(pane_id, False)
        self._schedule_retry(pane_id, pane)

    @Slot(str)
    def _on_bridge_stats(self, report: str) -> None:
        try:
            data = json.loads(report)
        except ValueError:
            logger.warning("grid page sent unreadable frame stats")
            return
        self.frame_stats_received.emit(data)

    @Slot(int, str)
    def _on_bridge_script_done(self, request_id: int, result: str) -> None:
        callback = self._script_callbacks.pop(request_id, None)
        if callback is not None:
            callback(json.loads(result) if result else None)

    @Slot(QWebEnginePage.RenderProcessTerminationStatus, int)
    def _on_page_render_process_terminated(
        self, status: QWebEnginePage.RenderProcessTerminationStatus, exit_code: int
    ) -> None:
        if status == QWebEnginePage.RenderProcessTerminationStatus.NormalTerminationStatus:
            return  # the page is closing with the view
        logger.error("grid renderer ended (%s, exit code %d); reloading the page", status.name, exit_code)
        self._page_ready = False
        self._script_callbacks.clear()
        for pane in self._panes.values():
            pane.cancel_retry()
            pane.connected = False
        QTimer.singleShot(_PAGE_RELOAD_DELAY_MS, self, self.reload)

    # -- helpers ---------------------------------------------------------------

    def _release_control(self) -> None:
        previous, self._control = self._control, ""
        if previous:
            if self._page_ready:
                self._bridge.control_changed.emit(previous, False)
                if previous in self._panes:
                    self._reconnect_with_scope(previous)
            self.control_changed.emit(previous, False)

    def _send_selection(self) -> None:
        if self._page_ready:
            self._bridge.selection_changed.emit(json.dumps(self._selected))

    def _send_pane(self, pane_id: str) -> None:
        pane = self._panes[pane_id]
        url = self._fresh_url(pane_id)
        if url is None:
            # Show the pane anyway (as disconnected) and retry.
            self._bridge.pane_added.emit(pane_id, pane.name, pane.state, "")
        else:
            self._bridge.pane_added.emit(pane_id, pane.name, pane.state, url)
        if pane_id in self._flows:
            self._bridge.pane_flow_changed.emit(pane_id, self._flows[pane_id])

    def _reconnect_with_scope(self, pane_id: str) -> None:
        """Reopen the pane's stream with a URL of its current scope (the page drops the old one)."""
        pane = self._panes[pane_id]
        pane.cancel_retry()
        pane.failures = 0
        self._renew_url(pane_id)

    def _renew_url(self, pane_id: str) -> None:
        url = self._fresh_url(pane_id)
        if url is not None:
            self._bridge.pane_url_renewed.emit(pane_id, url)

    def _fresh_url(self, pane_id: str) -> str | None:
        if self._url_provider is None:
            raise RuntimeError("GridView.set_url_provider() was not called")
        try:
            return self._url_provider(pane_id, "control" if pane_id == self._control else "view")
        except Exception:
            logger.exception("no stream URL for %s; will retry", pane_id)
            pane = self._panes.get(pane_id)
            if pane is not None:
                self._schedule_retry(pane_id, pane)
            return None

    def _schedule_retry(self, pane_id: str, pane: _Pane) -> None:
        if pane.timer is not None:
            return
        delay = min(_RECONNECT_FIRST_DELAY_MS * 2**pane.failures, _RECONNECT_MAX_DELAY_MS)
        pane.failures += 1
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(lambda: self._on_retry_timer_timeout(pane_id))
        timer.start(delay)
        pane.timer = timer

    def _on_retry_timer_timeout(self, pane_id: str) -> None:
        pane = self._panes.get(pane_id)
        if pane is None:
            return
        pane.cancel_retry()
        if self._page_ready:
            self._renew_url(pane_id)
