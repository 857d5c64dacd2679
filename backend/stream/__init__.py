"""VNC-over-WebSocket stream proxy with per-pane tokens.

The app asks ``StreamProxy.pane_url(device_id, scope)`` for a URL and hands it
to noVNC; the proxy (one relay process, never the app's event loop) checks the
URL's single-use token against the device it names, pumps bytes to that
device's ``vnc.sock``, and drops a ``view`` pane's input.
"""

from backend.stream.exceptions import InvalidDeviceIdError, ProxyNotRunningError, ProxyStartError, StreamError
from backend.stream.proxy import StreamProxy

__all__ = ["InvalidDeviceIdError", "ProxyNotRunningError", "ProxyStartError", "StreamError", "StreamProxy"]
