"""Errors of the stream proxy.

StreamError
├── ProxyStartError         the proxy process could not be started or did not become ready
├── ProxyNotRunningError    the proxy was used before start() or after stop()
├── InvalidDeviceIdError    a device id that no stream token can name
├── StreamRefused           a pane's request was not admitted (bad path or token, replay)
└── RfbViolation            a view pane sent what may change the device (the proxy closes it)
"""

from __future__ import annotations

from backend.exceptions import CorralError


class StreamError(CorralError):
    """Stream proxy error."""


class ProxyStartError(StreamError):
    """The stream proxy could not be started. See the stream proxy log under the data directory."""


class ProxyNotRunningError(StreamError):
    """The stream proxy is not running; start it first."""


class InvalidDeviceIdError(StreamError):
    """Not a valid device id for a stream token."""


class RfbViolation(StreamError):
    """A view-only stream sent a message that could change the device; the connection is closed."""


class StreamRefused(StreamError):
    """The stream request was refused: ask for a fresh pane URL."""
