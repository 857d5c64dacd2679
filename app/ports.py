"""What the window needs from the backend: the part of ``backend.api.Corral`` it uses.

``Corral`` satisfies this structurally; tests pass an in-memory fake. Keeping
the seam this narrow is what lets the whole window run without Postgres or Docker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from backend.api import DeviceInfo, DeviceListener, Health

__all__ = ["DeviceBackend"]


class DeviceBackend(Protocol):
    async def provision(self, kind: str, count: int) -> list[DeviceInfo]:
        """Queue devices; returns them in ``requested``. Raises CorralError on bad input."""
        ...

    async def remove(self, device_ids: list[str]) -> None: ...

    async def devices(self, include_removed: bool = False) -> list[DeviceInfo]: ...

    def add_listener(self, listener: DeviceListener) -> Callable[[], None]:
        """*listener* runs on the event loop for every device change; returns unsubscribe."""
        ...

    def pane_url(self, device_id: str) -> str:
        """A fresh, short-lived stream URL: ask again for every (re)connect."""
        ...

    async def health(self) -> Health: ...
