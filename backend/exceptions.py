"""The root of every error the backend raises on purpose.

    CorralError
    ├── AuthError            backend.auth.exceptions
    ├── ConfigError          backend.config.exceptions
    ├── DatabaseError        backend.db.exceptions
    ├── DeviceError          backend.devices.exceptions
    ├── DeviceRuntimeError   backend.runtime.exceptions
    ├── FlowError            backend.flows.model (every problem of a flow file)
    ├── HubError             backend.hub.exceptions
    ├── JobError             backend.jobs.exceptions
    └── StreamError          backend.stream.exceptions

Each subclass's docstring is its default message, written for the operator:
what happened and what to do.
"""

from __future__ import annotations

__all__ = ["CorralError"]


class CorralError(Exception):
    """Corral error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
