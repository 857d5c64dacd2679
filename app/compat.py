"""Work-arounds for defects in the Qt bindings we ship with.

PySide6/shiboken6 6.12.0 (the abi3 wheel, tagged for Python >= 3.10) returns
``None`` from void methods (``show``, ``update``, ``setText``,
``processEvents``, ``runJavaScript`` …) and ``True`` from ``Signal.emit``
without taking a reference. From Python 3.12 on these singletons are immortal,
so nothing happens; on 3.10/3.11 every call drops one reference, and after a
few thousand calls the process aborts with "Fatal Python error: none_dealloc".
``pin_singletons`` gives them the same protection 3.12 gives: a reference
count no run can exhaust. Remove this module once we require Python >= 3.12 or
a fixed PySide6.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["pin_singletons"]

_PIN = 1 << 40
_pinned = False


def pin_singletons() -> None:
    """Make None/True/False/Ellipsis/NotImplemented effectively immortal on Python < 3.12.

    Idempotent; a no-op on Python >= 3.12 (where they are immortal already).
    """
    global _pinned
    if _pinned or sys.version_info >= (3, 12):
        return
    for singleton in (None, True, False, Ellipsis, NotImplemented):
        # ob_refcnt is the first field of every object in release builds of CPython.
        ctypes.c_ssize_t.from_address(id(singleton)).value += _PIN
    _pinned = True
