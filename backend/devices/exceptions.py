"""Errors of device management.

DeviceError
├── InvalidTransition   a state change outside the state machine's graph
├── UnknownDevice       no device with that id or name
└── InvalidRequest      a provision request with a bad kind or count
"""

from __future__ import annotations

from backend.exceptions import CorralError


class DeviceError(CorralError):
    """Device error."""


class InvalidTransition(DeviceError):
    """That state change is not allowed."""


class UnknownDevice(DeviceError):
    """No such device."""


class InvalidRequest(DeviceError):
    """Invalid provision request."""
