"""Errors of configuration and the runtime directory.

ConfigError
└── RuntimeDirError   the runtime directory (or a device's part of it) is unsafe or cannot be made
"""

from __future__ import annotations

from backend.exceptions import CorralError


class ConfigError(CorralError):
    """Configuration error."""


class RuntimeDirError(ConfigError):
    """The runtime directory is unsafe or cannot be made."""
