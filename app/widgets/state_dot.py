"""A table delegate that draws a coloured state dot before the cell's text."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem, QWidget

__all__ = ["StateDotDelegate"]

AnyIndex = QModelIndex | QPersistentModelIndex


class StateDotDelegate(QStyledItemDelegate):
    """Draws a dot in ``colour_of(index)`` (no dot where it returns None)."""

    def __init__(self, colour_of: Callable[[AnyIndex], str | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colour_of = colour_of

    def initStyleOption(self, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        super().initStyleOption(option, index)
        colour = self._colour_of(index)
        if colour is None:
            return
        pixmap = QPixmap(10, 10)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawEllipse(1, 1, 8, 8)
        painter.end()
        option.icon = pixmap  # type: ignore[assignment]
        option.features |= QStyleOptionViewItem.ViewItemFeature.HasDecoration
        option.decorationSize = pixmap.size()
