"""The agent's errors. Everything a driver raises for a failed command is a :class:`CommandFailed`.

Tree::

    AgentError
     +-- CommandFailed        a command could not be done; the message is the one-line error
     |    +-- DeviceUnavailable   the device's app (Chromium) is not running right now
     +-- DriverStartError     the driver could not start (Playwright missing or broken)

The client turns every :class:`AgentError` into ``ok=false`` with ``str(exc)`` as
the error; anything else becomes ``<ExceptionName>: message`` (a bug to fix).
"""

from __future__ import annotations

__all__ = ["AgentError", "CommandFailed", "DeviceUnavailable", "DriverStartError"]


class AgentError(Exception):
    """Base of the agent's errors; the docstring of a subclass is its default message."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class CommandFailed(AgentError):
    """The command failed."""


class DeviceUnavailable(CommandFailed):
    """The device's browser is not running."""


class DriverStartError(AgentError):
    """The driver could not start."""
