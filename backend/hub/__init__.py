"""Agent hub: per-device unix-socket WebSocket servers, signed agent tokens."""

from backend.hub.exceptions import HubError, TokenError
from backend.hub.server import Hub, HubListener

__all__ = ["Hub", "HubError", "HubListener", "TokenError"]
