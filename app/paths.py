"""Where the app finds its bundled resources (the grid page, noVNC, icons)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["grid_page_path", "icon_path", "missing_assets", "novnc_path", "resources_dir"]

_RESOURCES_ENV = "CORRAL_RESOURCES_DIR"


def resources_dir() -> Path:
    """The ``resources/`` tree: ``$CORRAL_RESOURCES_DIR`` if set, else the checkout's."""
    override = os.environ.get(_RESOURCES_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "resources"


def grid_page_path() -> Path:
    return resources_dir() / "grid" / "index.html"


def novnc_path() -> Path:
    """noVNC's RFB module, installed by ``npm ci`` in ``resources/``."""
    return resources_dir() / "node_modules" / "@novnc" / "novnc" / "core" / "rfb.js"


def icon_path(name: str) -> Path:
    return resources_dir() / "icons" / f"{name}.svg"


def missing_assets() -> str | None:
    """A sentence for the operator when the grid page cannot work, else None."""
    if not grid_page_path().is_file():
        return f"The live grid page is missing ({grid_page_path()}); reinstall Corral."
    if not novnc_path().is_file():
        return f"noVNC is not installed: run `npm ci` in {resources_dir()} (or `make`), then restart Corral."
    return None
