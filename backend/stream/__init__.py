"""VNC-over-WebSocket stream proxy with per-pane tokens.

The app asks ``StreamProxy.pane_url(device_id)`` for a URL and hands it to noVNC;
the proxy (a websockify process, never the app's event loop) checks the URL's
token and pumps bytes to that device's ``vnc.sock``.
"""

from backend.stream.exceptions import InvalidDeviceIdError, ProxyNotRunningError, ProxyStartError, StreamError
from backend.stream.proxy import StreamProxy

__all__ = ["InvalidDeviceIdError", "ProxyNotRunningError", "ProxyStartError", "StreamError", "StreamProxy"]
