"""The dark look: Fusion style, a dark palette, and a few rules Fusion lacks."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from app.paths import icon_path

__all__ = ["apply_dark_theme", "icon"]

BACKGROUND = "#101317"
SURFACE = "#161a1f"
RAISED = "#1d2228"
BORDER = "#2a3038"
TEXT = "#d7dce2"
MUTED = "#8b949e"
ACCENT = "#2f81f7"

_STYLESHEET = f"""
QMainWindow, QDialog {{ background: {BACKGROUND}; }}
QToolBar {{
    background: {SURFACE};
    border: none;
    border-bottom: 1px solid {BORDER};
    padding: 3px 6px;
    spacing: 2px;
}}
QToolBar::separator {{ background: {BORDER}; width: 1px; margin: 5px 6px; }}
QToolButton {{
    color: {TEXT};
    background: transparent;
    border: 1px solid transparent;
    border-radius: 4px;
    padding: 4px 7px;
}}
QToolButton:hover {{ background: {RAISED}; border-color: {BORDER}; }}
QToolButton:checked {{ background: #233042; border-color: #33507a; }}
QToolButton:disabled {{ color: #545d68; }}
QLineEdit, QSpinBox, QComboBox {{
    background: {BACKGROUND};
    border: 1px solid {BORDER};
    border-radius: 4px;
    padding: 4px 6px;
    selection-background-color: {ACCENT};
}}
QLineEdit:focus, QSpinBox:focus, QComboBox:focus {{ border-color: {ACCENT}; }}
QTableView {{
    background: {SURFACE};
    alternate-background-color: #181c22;
    border: 1px solid {BORDER};
    border-radius: 4px;
    gridline-color: transparent;
    selection-background-color: #1f3350;
    selection-color: {TEXT};
}}
QTableView::item {{ padding: 0 6px; border: none; }}
QHeaderView::section {{
    background: {RAISED};
    color: {MUTED};
    border: none;
    border-bottom: 1px solid {BORDER};
    padding: 5px 6px;
    font-weight: 600;
}}
QStatusBar {{ background: {SURFACE}; border-top: 1px solid {BORDER}; color: {MUTED}; }}
QStatusBar::item {{ border: none; }}
QSplitter::handle {{ background: {BACKGROUND}; }}
QPushButton {{
    background: {RAISED};
    border: 1px solid {BORDER};
    border-radius: 4px;
    padding: 5px 14px;
    color: {TEXT};
}}
QPushButton:hover {{ border-color: #4a535f; }}
QPushButton:default {{ background: #1f6feb; border-color: #1f6feb; color: white; }}
QPushButton:disabled {{ color: #545d68; }}
QProgressBar {{
    background: {BACKGROUND};
    border: 1px solid {BORDER};
    border-radius: 3px;
    height: 8px;
    text-align: center;
    color: transparent;
}}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 2px; }}
QMenu {{ background: {RAISED}; border: 1px solid {BORDER}; padding: 4px; }}
QMenu::item {{ padding: 5px 22px 5px 12px; border-radius: 3px; }}
QMenu::item:selected {{ background: #1f3350; }}
QMenu::separator {{ height: 1px; background: {BORDER}; margin: 4px 6px; }}
QToolTip {{ background: {RAISED}; color: {TEXT}; border: 1px solid {BORDER}; padding: 4px; }}
QScrollBar:vertical {{ background: transparent; width: 10px; margin: 0; }}
QScrollBar::handle:vertical {{ background: #30363d; border-radius: 4px; min-height: 24px; margin: 2px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ height: 0; width: 0; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 0; }}
QScrollBar::handle:horizontal {{ background: #30363d; border-radius: 4px; min-width: 24px; margin: 2px; }}
QMainWindow::separator {{ background: {BACKGROUND}; width: 6px; height: 6px; }}
QDockWidget {{ color: {MUTED}; font-weight: 600; }}
QDockWidget::title {{ background: {BACKGROUND}; padding: 6px 10px 2px 10px; text-align: left; }}
QDockWidget::close-button, QDockWidget::float-button {{
    border: none;
    background: transparent;
    padding: 2px;
}}
QDockWidget::close-button:hover, QDockWidget::float-button:hover {{ background: {RAISED}; }}
"""

# Icons drawn here rather than shipped in resources/icons/ (same 24 px, 1.8 stroke style).
_STROKE = 'fill="none" stroke="#c9d1d9" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"'
_INLINE_ICONS = {
    "jobs": f'<path d="M9 6h11M9 12h11M9 18h11" {_STROKE}/>'
    f'<path d="M3.5 6l1.2 1.2L7 4.8M3.5 12l1.2 1.2L7 10.8" {_STROKE}/>'
    f'<circle cx="5" cy="18" r="1.4" {_STROKE}/>',
    "retry": f'<path d="M20 12a8 8 0 1 1-2.34-5.66M20 4v4.5h-4.5" {_STROKE}/>',
    "cancel": f'<circle cx="12" cy="12" r="8.5" {_STROKE}/><path d="M9 9l6 6M15 9l-6 6" {_STROKE}/>',
    "run": f'<path d="M7 4.5v15l12-7.5z" {_STROKE}/>',
    "flows": f'<path d="M4 6h9M4 12h6M4 18h9" {_STROKE}/><path d="M15 9.5v7l5.5-3.5z" {_STROKE}/>',
}
_INLINE_SIZES = (16, 24, 32, 48)


def apply_dark_theme(app: QApplication) -> None:
    """Fusion with a dark palette and the stylesheet above, for the whole app."""
    app.setStyle("Fusion")
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: BACKGROUND,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: SURFACE,
        QPalette.ColorRole.AlternateBase: "#181c22",
        QPalette.ColorRole.ToolTipBase: RAISED,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: "#6e7681",
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: RAISED,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#58a6ff",
        QPalette.ColorRole.Mid: BORDER,
        QPalette.ColorRole.Dark: "#0b0d10",
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#545d68"))
    app.setPalette(palette)
    app.setStyleSheet(_STYLESHEET)


def icon(name: str) -> QIcon:
    """An icon from ``resources/icons/<name>.svg``, else a built-in one, else an empty icon."""
    path = icon_path(name)
    if path.is_file():
        return QIcon(str(path))
    body = _INLINE_ICONS.get(name)
    return _svg_icon(body) if body is not None else QIcon()


def _svg_icon(body: str) -> QIcon:
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24">{body}</svg>'
    renderer = QSvgRenderer(QByteArray(svg.encode()))
    result = QIcon()
    for size in _INLINE_SIZES:
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        renderer.render(painter)
        painter.end()
        result.addPixmap(pixmap)
    return result
