"""Agent hub: per-device unix-socket WebSocket servers, signed agent tokens (backend.auth)."""

from backend.hub.exceptions import HubError
from backend.hub.server import Hub, HubListener

__all__ = ["Hub", "HubError", "HubListener"]
