"""Which URLs ``open_url`` refuses: the device's own control files.

A URL often comes from another device (``openLink: ${viewer.qr}``: the text of a
QR code on the viewer's screen), so a hostile device chooses it. The device's
runtime directory (``/run/corral``: its agent credential, its sockets) and
``/proc`` (through which ``/proc/self/root/run/corral`` reaches the same files)
are no page's business: opening them would put the credential on the screen, in
screenshots and in ``copyTextFrom`` results stored by the host. Pure: the check
resolves links with the agent's view of the file system, which is the browser's.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

__all__ = ["PRIVATE_DIRS", "refused_url"]

PRIVATE_DIRS = ("/run/corral", "/proc")
"""Folders no ``file:`` URL opened by a command may point into."""
_WRAPPERS = ("view-source:",)


def refused_url(url: str, private_dirs: tuple[str, ...] = PRIVATE_DIRS) -> str | None:
    """Why *url* may not be opened (a sentence), or None when it may."""
    inner = url.strip()
    while inner.lower().startswith(_WRAPPERS):
        inner = inner[inner.index(":") + 1 :].strip()
    parts = urlsplit(inner)
    if parts.scheme.lower() != "file":
        return None
    path = os.path.realpath(unquote(parts.path) or "/")
    for folder in private_dirs:
        if path == folder or path.startswith(folder.rstrip("/") + "/"):
            return f"{folder} holds the device's private files; no command opens them"
    return None
