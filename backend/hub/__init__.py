"""Agent hub: per-device unix-socket WebSocket servers; agents authenticate with
session tokens from their device credential (backend.auth.credentials)."""

from backend.hub.exceptions import HubError
from backend.hub.server import Hub, HubListener

__all__ = ["Hub", "HubError", "HubListener"]
