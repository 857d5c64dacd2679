"""Where the main window's actions appear: the toolbar and the menus, by action name."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QMenuBar, QToolBar, QToolButton, QWidget

from app.theme import icon
from app.widgets.grid_view import GridView

__all__ = ["MENUS", "SEPARATOR", "TOOLBAR", "fill_menus", "fill_toolbar", "pane_menu"]

SEPARATOR = "|"
_LAYOUTS = ("layout-1", "layout-2", "layout-3", "layout-4")

TOOLBAR: tuple[str, ...] = (
    *("add", "remove", "run-flow", SEPARATOR),
    *(*_LAYOUTS, SEPARATOR),
    *("back", "control", SEPARATOR),
    *("jobs", "flows"),
)
MENUS: Mapping[str, tuple[str, ...]] = {
    "&File": ("quit",),
    "&Devices": ("add", "remove", SEPARATOR, "run-flow", "recent-flows"),
    "&View": (*_LAYOUTS, SEPARATOR, "back", "control", SEPARATOR, "jobs", "flows", "stats"),
}
"""Menu title -> entries: action names, SEPARATOR, or the name of a submenu."""


def fill_toolbar(
    bar: QToolBar,
    actions: Mapping[str, QAction],
    dropdowns: Mapping[str, QMenu] | None = None,
    names: Sequence[str] = TOOLBAR,
) -> None:
    """Add *names* to *bar*; an action in *dropdowns* gets that menu on an arrow beside its button."""
    for name in names:
        if name == SEPARATOR:
            bar.addSeparator()
            continue
        bar.addAction(actions[name])
        menu = (dropdowns or {}).get(name)
        button = bar.widgetForAction(actions[name])
        if menu is not None and isinstance(button, QToolButton):
            button.setMenu(menu)
            button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)


def fill_menus(
    menus: QMenuBar,
    actions: Mapping[str, QAction],
    submenus: Mapping[str, QMenu],
    layout: Mapping[str, Sequence[str]] = MENUS,
) -> None:
    for title, names in layout.items():
        menu = menus.addMenu(title)
        for name in names:
            if name == SEPARATOR:
                menu.addSeparator()
            elif name in submenus:
                menu.addMenu(submenus[name])
            else:
                menu.addAction(actions[name])


def pane_menu(
    parent: QWidget,
    grid: GridView,
    pane_id: str,
    actions: Mapping[str, QAction],
    remove: Callable[[list[str]], None],
) -> QMenu:
    """The context menu of pane *pane_id* ("": of the grid's empty space)."""
    menu = QMenu(parent)
    if not pane_id:
        for name in _LAYOUTS:
            menu.addAction(actions[name])
        return menu
    menu.addAction(actions["run-flow"])
    menu.addSeparator()
    if grid.focused_pane() == pane_id:
        menu.addAction(icon("back"), "Back to grid", grid.show_grid)
    else:
        menu.addAction(icon("layout-1"), "Fill grid area", lambda: grid.focus_pane(pane_id))
    in_control = grid.control_pane() == pane_id
    menu.addAction(
        icon("control"),
        "Release control" if in_control else "Take control",
        lambda: grid.set_control(pane_id, not in_control),
    )
    menu.addAction(icon("reconnect"), "Reconnect stream", lambda: grid.reconnect_pane(pane_id))
    menu.addSeparator()
    menu.addAction(icon("remove"), "Remove device…", lambda: remove([pane_id]))
    return menu
