"""Health display: status bar indicators and the "Docker unavailable" banner."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStatusBar, QWidget

from backend.api import Health

__all__ = ["DockerBanner", "StatusBar"]

_OK = "#3fb950"
_BAD = "#f85149"
_UNKNOWN = "#8b949e"


class _Indicator(QLabel):
    """``● Name: summary`` with the full message as tooltip."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._name = name
        self.setTextFormat(Qt.TextFormat.RichText)
        self.set_unknown("checking…")

    def set_state(self, ok: bool, message: str, *, bad: str = "unavailable") -> None:
        summary = "ok" if ok else bad
        self._show(_OK if ok else _BAD, summary, message or summary)

    def set_unknown(self, message: str) -> None:
        self._show(_UNKNOWN, "unknown", message)

    def summary(self) -> str:
        return self.property("summary") or ""

    def _show(self, colour: str, summary: str, message: str) -> None:
        self.setProperty("summary", summary)
        self.setText(
            f"<span style='color:{colour}'>&#9679;</span>&nbsp;{self._name}: "
            f"<span style='color:#d7dce2'>{summary}</span>"
        )
        self.setToolTip(f"{self._name}: {message}")


class StatusBar(QStatusBar):
    """Device counts on the left; Docker, Postgres and background-task health on the right.

    "Background" turns red while one of the backend's supervised tasks (the
    reconciler, the host lock watch, the database listener) is failing; its
    tooltip says this process's role, who the host is, and each task's trouble.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self._counts = QLabel()
        self._docker = _Indicator("Docker")
        self._database = _Indicator("Postgres")
        self._background = _Indicator("Background")
        self._counts.setContentsMargins(6, 0, 6, 0)
        self.addWidget(self._counts)
        for indicator in (self._docker, self._database, self._background):
            indicator.setContentsMargins(8, 0, 8, 0)
            self.addPermanentWidget(indicator)

    def counts_text(self) -> str:
        return self._counts.text()

    def docker_summary(self) -> str:
        return self._docker.summary()

    def database_summary(self) -> str:
        return self._database.summary()

    def background_summary(self) -> str:
        return self._background.summary()

    def background_details(self) -> str:
        return self._background.toolTip()

    @Slot(object)
    def show_health(self, health: Health) -> None:
        self._docker.set_state(health.docker_ok, health.docker_message)
        self._database.set_state(health.database_ok, health.database_message)
        details = f"role: {health.role}; host: {health.host or 'unknown'}; {health.background_message}"
        self._background.set_state(health.background_ok, details, bad="failing")

    @Slot(str)
    def show_health_unknown(self, message: str) -> None:
        self._docker.set_unknown(message)
        self._database.set_unknown(message)
        self._background.set_unknown(message)

    @Slot(dict)
    def show_counts(self, counts: dict[str, int]) -> None:
        """``{state: n}`` -> "12 devices · 8 ready · 1 failed"."""
        total = sum(counts.values())
        if not total:
            self._counts.setText("No devices")
            return
        parts = [f"{total} device{'s' if total != 1 else ''}"]
        for state in ("ready", "busy", "provisioning", "booting", "requested", "failed"):
            if counts.get(state):
                parts.append(f"{counts[state]} {state}")
        self._counts.setText("  ·  ".join(parts))


class DockerBanner(QFrame):
    """A strip above the grid while Docker is unavailable, with the backend's hint."""

    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dockerBanner")
        self.setStyleSheet(
            "#dockerBanner { background: #3a2616; border: 1px solid #9e6a03; border-radius: 4px; }"
            "#dockerBanner QLabel { color: #f2cc60; }"
        )
        self._title = QLabel("<b>Docker is unavailable.</b>")
        self._message = QLabel()
        self._message.setWordWrap(True)
        self._message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._retry = QPushButton("Check again")
        self._retry.setCursor(Qt.CursorShape.PointingHandCursor)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(10)
        layout.addWidget(self._title)
        layout.addWidget(self._message, 1)
        layout.addWidget(self._retry)
        self._retry.clicked.connect(self.retry_requested)
        self.hide()

    def message(self) -> str:
        return self._message.text()

    @Slot(object)
    def show_health(self, health: Health) -> None:
        if health.docker_ok:
            self.hide()
            return
        hint = health.docker_message or "Start the Docker daemon, then check again."
        self._message.setText(f"Devices cannot be provisioned or started. {hint}")
        self.show()
