"""A step's screenshot, larger."""

from __future__ import annotations

import asyncio
import logging

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QScrollArea, QVBoxLayout, QWidget

__all__ = ["ScreenshotDialog"]

logger = logging.getLogger(__name__)

_MAX_SIZE = QSize(1280, 860)


class ScreenshotDialog(QDialog):
    """Shows the PNG at *path*, read in a thread (the loop never waits on the disk).

    Shown with ``show()``; deletes itself when closed. ``loaded()`` is True once
    the picture (or the reason it could not be read) is shown.
    """

    def __init__(self, path: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("screenshot")
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._path = path
        self._loaded = False
        self._image_size = QSize()
        self._label = QLabel("Loading…")
        self._label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._label.setToolTip(path)
        scroll = QScrollArea()
        scroll.setWidget(self._label)
        scroll.setWidgetResizable(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(scroll)
        self.resize(900, 620)
        self._task = asyncio.ensure_future(self._load())
        # Closed or deleted with its parent before the file was read: never touch the widget.
        self.finished.connect(self._on_finished)
        self.destroyed.connect(self._task.cancel)

    def loaded(self) -> bool:
        return self._loaded

    def image_size(self) -> QSize:
        """The picture's own size (empty until loaded, or if it could not be read)."""
        return self._image_size

    def text(self) -> str:
        return self._label.text()

    def _on_finished(self, result: int) -> None:
        self._task.cancel()

    async def _load(self) -> None:
        image = await asyncio.to_thread(QImage, self._path)
        if image.isNull():
            self._label.setText(f"Cannot read {self._path}")
        else:
            self._image_size = image.size()
            shown = image
            if image.width() > _MAX_SIZE.width() or image.height() > _MAX_SIZE.height():
                shown = image.scaled(
                    _MAX_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                )
            self._label.setPixmap(QPixmap.fromImage(shown))
            self.resize(min(shown.width() + 24, 1320), min(shown.height() + 24, 900))
        self._loaded = True
