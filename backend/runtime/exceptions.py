"""Errors of the device runtime.

DeviceRuntimeError
├── RuntimeUnavailable   the Docker daemon cannot be reached
├── ImageBuildError      building a device image failed
└── InstanceError        creating or controlling a device's container failed
"""

from __future__ import annotations

from backend.exceptions import CorralError


class DeviceRuntimeError(CorralError):
    """Device runtime error."""


class RuntimeUnavailable(DeviceRuntimeError):
    """Cannot reach the Docker daemon. Start it (e.g. `sudo systemctl start docker`) or set DOCKER_HOST."""


class ImageBuildError(DeviceRuntimeError):
    """Building the device image failed."""


class InstanceError(DeviceRuntimeError):
    """The device's container could not be created or controlled."""
