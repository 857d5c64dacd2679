"""Process-wide Qt settings that must be in place before QApplication exists."""

from __future__ import annotations

import os

__all__ = ["configure_qt_environment"]

_CHROMIUM_FLAGS_ENV = "QTWEBENGINE_CHROMIUM_FLAGS"


def configure_qt_environment() -> None:
    """Select software rendering for Qt Quick and Qt WebEngine.

    Measured on the target box: Qt's llvmpipe GL path doubles the grid's CPU
    cost, so Chromium runs with ``--disable-gpu``. Its sandbox cannot run as
    root, so root gets ``--no-sandbox``. Flags already in the environment are
    kept. Must run before ``QApplication`` is created (it only edits
    ``os.environ``); calling it twice is harmless.
    """
    os.environ.setdefault("QT_QUICK_BACKEND", "software")
    flags = os.environ.get(_CHROMIUM_FLAGS_ENV, "").split()
    wanted = ["--disable-gpu"]
    if os.geteuid() == 0:
        wanted.append("--no-sandbox")
    for flag in wanted:
        if flag not in flags:
            flags.append(flag)
    os.environ[_CHROMIUM_FLAGS_ENV] = " ".join(flags)
