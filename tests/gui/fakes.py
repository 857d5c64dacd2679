"""An in-memory stand-in for ``backend.api.Corral``: the part the window uses."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from backend.api import DEVICE_KINDS, MAX_BATCH, CorralError, DeviceInfo, DeviceListener, Health

__all__ = ["FakeCorral", "device"]

_T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def device(device_id: str, state: str = "ready", **changes: object) -> DeviceInfo:
    """A DeviceInfo with readable defaults."""
    values: dict[str, object] = {
        "id": device_id,
        "name": device_id,
        "kind": "browser",
        "state": state,
        "reason": None,
        "created_at": _T0,
        "updated_at": _T0,
        "progress": 1.0 if state in {"ready", "busy"} else 0.0,
        "progress_message": "",
    }
    values.update(changes)
    return DeviceInfo(**values)  # type: ignore[arg-type]


class FakeCorral:
    """Devices in a dict; ``set_state`` plays the backend's part (notifies listeners).

    ``pane_url`` delegates to *url_for* (e.g. a real stream proxy). ``health`` can be
    changed by assigning ``health_value``; ``fail_next`` makes the next call raise.
    """

    def __init__(self, url_for: Callable[[str], str] | None = None) -> None:
        self.items: dict[str, DeviceInfo] = {}
        self.listeners: list[DeviceListener] = []
        self.health_value = Health(True, "Docker: connected", True, "Postgres: connected")
        self.health_calls = 0
        self.removed: list[list[str]] = []
        self.fail_next: Exception | None = None
        self._url_for = url_for
        self._clock = (_T0 + timedelta(seconds=n) for n in itertools.count(1))
        self._ids = itertools.count(1)

    # -- the Corral surface ------------------------------------------------------

    async def provision(self, kind: str, count: int) -> list[DeviceInfo]:
        await asyncio.sleep(0)
        self._raise_if_asked()
        if kind not in DEVICE_KINDS:
            raise CorralError(f"unknown device kind {kind!r}; choose one of {', '.join(DEVICE_KINDS)}")
        if not 1 <= count <= MAX_BATCH:
            raise CorralError(f"count must be from 1 to {MAX_BATCH}")
        created = []
        for _ in range(count):
            n = next(self._ids)
            info = device(f"new-{n}", "requested", name=f"{kind}-{n}", created_at=next(self._clock))
            self.items[info.id] = info
            created.append(info)
        return created

    async def remove(self, device_ids: list[str]) -> None:
        await asyncio.sleep(0)
        self._raise_if_asked()
        self.removed.append(list(device_ids))
        for device_id in device_ids:
            self.set_state(device_id, "removed")

    async def devices(self, include_removed: bool = False) -> list[DeviceInfo]:
        await asyncio.sleep(0)
        self._raise_if_asked()
        return [d for d in self.items.values() if include_removed or d.state != "removed"]

    def add_listener(self, listener: DeviceListener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    def pane_url(self, device_id: str) -> str:
        if self._url_for is None:
            return "ws://127.0.0.1:9/websockify?token=none"
        return self._url_for(device_id)

    async def health(self) -> Health:
        await asyncio.sleep(0)
        self.health_calls += 1
        return self.health_value

    # -- driving it --------------------------------------------------------------

    def add(self, info: DeviceInfo) -> DeviceInfo:
        self.items[info.id] = info
        return info

    def set_state(self, device_id: str, state: str, **changes: object) -> DeviceInfo:
        """Change a device and tell the listeners, as the backend does."""
        info = replace(self.items[device_id], state=state, updated_at=next(self._clock), **changes)  # type: ignore[arg-type]
        self.items[device_id] = info
        for listener in list(self.listeners):
            listener(info)
        return info

    def _raise_if_asked(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
