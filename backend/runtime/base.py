"""The seam between Corral and whatever runs devices.

A runtime creates one isolated unit (a container) per device, finds it again by
the device id (so handlers are idempotent), and removes it. Implementations must
not block the event loop: blocking SDK calls go through ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["DeviceSpec", "Instance", "ProgressCallback", "Runtime"]

ProgressCallback = Callable[[float, str], None]
"""Called on the event loop thread with (fraction 0..1, human message) while long work runs."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What a runtime needs to start a device."""

    device_id: str
    name: str
    kind: str
    runtime_dir: Path
    """Host directory (0700) mounted at /run/corral inside the device."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the device (start URL, screen, ...). Never a secret: it
    shows in ``docker inspect``; the agent's credential is a file in ``runtime_dir``."""


@dataclass(frozen=True, slots=True)
class Instance:
    """A running (or exited) unit that belongs to a device."""

    device_id: str
    instance_id: str
    status: str
    """Runtime's own word: created, running, exited, dead, ..."""
    exit_code: int | None = None


class Runtime(Protocol):
    async def ping(self) -> None:
        """Raise RuntimeUnavailable when the runtime cannot be reached."""

    async def ensure_image(
        self, kind: str, progress: ProgressCallback | None = None, *, force: bool = False
    ) -> str:
        """Build the image for *kind* if missing or stale; return its reference."""

    async def create(self, spec: DeviceSpec) -> Instance:
        """Start the device; if one exists for spec.device_id, return it instead."""

    async def find(self, device_id: str) -> Instance | None: ...

    async def list(self) -> list[Instance]:
        """Every unit labelled as a Corral device, running or not."""

    async def logs(self, device_id: str, tail: int = 50) -> str: ...

    async def remove(self, device_id: str) -> None:
        """Stop and delete the device's unit. No error if it is already gone."""

    async def close(self) -> None:
        """Release connections to the runtime (devices keep running)."""
